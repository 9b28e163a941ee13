//! The dimensions cost dashboards filter by: the charge category of a line item (derived from
//! the columns every DBR has, or from CUR's line item type), and the region and purchase option
//! of a usage. The rules are in the README ("Dimensions"); each has a test here with rows shaped
//! like AWS's.

/// What a line item charges for. Decided per line item, in this order (the first rule that
/// applies wins):
/// 1. `tax`: no `ProductName` (AWS's tax rows, "Tax of type …", are the only line items
///    without one);
/// 2. `refund`: a negative cost whose `ItemDescription` says "refund";
/// 3. `credit`: any other negative cost (AWS credits, promotional and SLA credits);
/// 4. `support`: a `ProductName` starting "AWS Support" or "AWS Premium Support";
/// 5. `marketplace`: billed by the `AWSMarketplace` entity (from the file name);
/// 6. `ri_fee`: a reserved-instance fee, a `HeavyUsage`, `MediumUsage` or `LightUsage` usage type;
/// 7. `fee`: no usage start date or no usage quantity (monthly and one-time fees, renewals);
/// 8. `usage`: the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChargeCategory {
    Usage,
    Fee,
    Tax,
    Credit,
    Refund,
    RiFee,
    Support,
    Marketplace,
}

impl ChargeCategory {
    pub const ALL: [ChargeCategory; 8] = [
        ChargeCategory::Usage,
        ChargeCategory::Fee,
        ChargeCategory::Tax,
        ChargeCategory::Credit,
        ChargeCategory::Refund,
        ChargeCategory::RiFee,
        ChargeCategory::Support,
        ChargeCategory::Marketplace,
    ];

    /// As stored in the `charge_category` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeCategory::Usage => "usage",
            ChargeCategory::Fee => "fee",
            ChargeCategory::Tax => "tax",
            ChargeCategory::Credit => "credit",
            ChargeCategory::Refund => "refund",
            ChargeCategory::RiFee => "ri_fee",
            ChargeCategory::Support => "support",
            ChargeCategory::Marketplace => "marketplace",
        }
    }

    /// Its place in [`ChargeCategory::ALL`] (and in a usage key).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(index: u8) -> Option<ChargeCategory> {
        ChargeCategory::ALL.get(usize::from(index)).copied()
    }

    /// Classifies one line item from its raw fields (see the type's rules).
    pub fn of_line_item(item: &LineItemFields<'_>) -> ChargeCategory {
        if item.product.is_empty() {
            return ChargeCategory::Tax;
        }
        if item.negative {
            return if contains_ignoring_case(item.description, b"refund") {
                ChargeCategory::Refund
            } else {
                ChargeCategory::Credit
            };
        }
        if item.product.starts_with(b"AWS Support")
            || item.product.starts_with(b"AWS Premium Support")
        {
            return ChargeCategory::Support;
        }
        if item.marketplace {
            return ChargeCategory::Marketplace;
        }
        if is_reserved_instance_fee(item.usage_type) {
            return ChargeCategory::RiFee;
        }
        if item.undated || item.no_quantity {
            return ChargeCategory::Fee;
        }
        ChargeCategory::Usage
    }

    /// Classifies one CUR line item by its `lineItem/LineItemType` (README table): the
    /// discounts are credits, commitment fees other than RIs' are fees, and any other type
    /// (usage covered by a reservation or a savings plan, and types AWS adds later) is usage.
    /// Usage and fees of a support product are `support`; those billed by AWS Marketplace
    /// (`bill/BillingEntity`) are `marketplace`.
    pub fn of_line_item_type(
        line_item_type: &[u8],
        product: &[u8],
        marketplace: bool,
    ) -> ChargeCategory {
        let category = match line_item_type {
            b"Tax" => ChargeCategory::Tax,
            b"Refund" => ChargeCategory::Refund,
            b"Credit"
            | b"Discount"
            | b"BundledDiscount"
            | b"PrivateRateDiscount"
            | b"EdpDiscount"
            | b"SppDiscount"
            | b"RiVolumeDiscount"
            | b"DistributorDiscount" => ChargeCategory::Credit,
            b"RIFee" => ChargeCategory::RiFee,
            b"Fee" | b"SavingsPlanUpfrontFee" | b"SavingsPlanRecurringFee" => ChargeCategory::Fee,
            _ => ChargeCategory::Usage,
        };
        let support = [
            &b"AWS Support"[..],
            b"AWS Premium Support",
            b"AWSSupport",
            b"AWSPremiumSupport",
            b"AWSDeveloperSupport",
        ]
        .iter()
        .any(|name| product.starts_with(name));
        match category {
            ChargeCategory::Usage | ChargeCategory::Fee if support => ChargeCategory::Support,
            ChargeCategory::Usage | ChargeCategory::Fee if marketplace => {
                ChargeCategory::Marketplace
            }
            category => category,
        }
    }
}

/// The fields of a line item its charge category is decided by.
pub struct LineItemFields<'a> {
    pub product: &'a [u8],
    pub usage_type: &'a [u8],
    pub description: &'a [u8],
    /// Either cost column is negative.
    pub negative: bool,
    /// `UsageStartDate` is empty.
    pub undated: bool,
    /// `UsageQuantity` is empty.
    pub no_quantity: bool,
    /// The report is billed by the `AWSMarketplace` entity.
    pub marketplace: bool,
}

/// `HeavyUsage`, `MediumUsage` or `LightUsage` in the usage type. A plain scan: usage types
/// are a few dozen bytes, and building a `memmem` searcher for each line item cost more.
pub(crate) fn is_reserved_instance_fee(usage_type: &[u8]) -> bool {
    (0..usage_type.len()).any(|at| {
        let (before, rest) = usage_type.split_at(at);
        rest.starts_with(b"Usage")
            && [&b"Heavy"[..], b"Medium", b"Light"]
                .iter()
                .any(|kind| before.ends_with(kind))
    })
}

/// Spot usage: `SpotUsage` in the usage type (`USW2-SpotUsage:c4.large`).
pub fn is_spot_usage(usage_type: &[u8]) -> bool {
    usage_type.windows(9).any(|part| part == b"SpotUsage")
}

fn contains_ignoring_case(text: &[u8], lower: &[u8]) -> bool {
    text.windows(lower.len())
        .any(|window| window.eq_ignore_ascii_case(lower))
}

/// How a usage was bought: reserved (`ReservedInstance` = `Y`, or a reserved-instance fee),
/// spot (`SpotUsage` in the usage type), or on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PurchaseOption {
    OnDemand,
    Reserved,
    Spot,
}

impl PurchaseOption {
    pub fn of(usage_type: &[u8], reserved_instance: bool) -> PurchaseOption {
        if reserved_instance || is_reserved_instance_fee(usage_type) {
            PurchaseOption::Reserved
        } else if is_spot_usage(usage_type) {
            PurchaseOption::Spot
        } else {
            PurchaseOption::OnDemand
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseOption::OnDemand => "on_demand",
            PurchaseOption::Reserved => "reserved",
            PurchaseOption::Spot => "spot",
        }
    }
}

/// The usage type prefixes AWS uses for regions (`USW2-BoxUsage`). `EU` is the oldest form of
/// eu-west-1's.
const REGION_PREFIXES: [(&str, &str); 26] = [
    ("USE1", "us-east-1"),
    ("USE2", "us-east-2"),
    ("USW1", "us-west-1"),
    ("USW2", "us-west-2"),
    ("UGW1", "us-gov-west-1"),
    ("UGE1", "us-gov-east-1"),
    ("CAN1", "ca-central-1"),
    ("EU", "eu-west-1"),
    ("EUW1", "eu-west-1"),
    ("EUW2", "eu-west-2"),
    ("EUW3", "eu-west-3"),
    ("EUC1", "eu-central-1"),
    ("EUN1", "eu-north-1"),
    ("EUS1", "eu-south-1"),
    ("APN1", "ap-northeast-1"),
    ("APN2", "ap-northeast-2"),
    ("APN3", "ap-northeast-3"),
    ("APS1", "ap-southeast-1"),
    ("APS2", "ap-southeast-2"),
    ("APS3", "ap-south-1"),
    ("APE1", "ap-east-1"),
    ("SAE1", "sa-east-1"),
    ("MES1", "me-south-1"),
    ("AFS1", "af-south-1"),
    ("CNN1", "cn-north-1"),
    ("CNW1", "cn-northwest-1"),
];

/// Products billed globally: no region, whatever their usage types say (CloudFront's `EU-`
/// and `US-` prefixes name edge locations, not regions).
const GLOBAL_PRODUCTS: [&str; 4] = [
    "Amazon CloudFront",
    "Amazon Route 53",
    "AWS Support",
    "AWS Premium Support",
];

/// AWS's way of writing a unit (`Hrs`, `GB-Mo`, `Lambda-GB-Second`) as FOCUS's unit format
/// asks: a count or data size unit, alone or joined by `-` to a plural time unit (`Hours`,
/// `GB-Months`, `Lambda GB-Seconds`). `None` for an empty unit, or koku-nise's `None`.
pub fn focus_unit(raw: &str) -> Option<String> {
    const TIMES: [(&str, &str); 14] = [
        ("Hrs", "Hours"),
        ("Hr", "Hours"),
        ("Hour", "Hours"),
        ("Hours", "Hours"),
        ("Mo", "Months"),
        ("Month", "Months"),
        ("Months", "Months"),
        ("Second", "Seconds"),
        ("Seconds", "Seconds"),
        ("Sec", "Seconds"),
        ("Minute", "Minutes"),
        ("Minutes", "Minutes"),
        ("Day", "Days"),
        ("Days", "Days"),
    ];
    let time = |word: &str| TIMES.iter().find(|(aws, _)| *aws == word).map(|(_, t)| *t);
    // Words of letters and digits, separated by one space; a word must begin with a letter.
    let words = |text: &str| -> String {
        let mut out = String::new();
        for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            let word = word.trim_start_matches(|c: char| c.is_ascii_digit());
            if word.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
        out
    };
    let raw = raw.trim();
    if raw.is_empty() || raw == "None" {
        return None;
    }
    if let Some(time) = time(raw) {
        return Some(time.to_owned());
    }
    if let Some((unit, last)) = raw.rsplit_once('-')
        && let Some(time) = time(last)
    {
        let unit = words(unit);
        return Some(if unit.is_empty() {
            time.to_owned()
        } else {
            format!("{unit}-{time}")
        });
    }
    let unit = words(raw);
    Some(if unit.is_empty() {
        "Units".to_owned()
    } else {
        unit
    })
}

/// A DBR usage type's unit (a DBR names none): storage by the byte-hour is billed in
/// `GB-Months`, transfer in `GB`, requests in `Requests`, I/O in `IOs`, instances and other
/// running things by the hour; anything else (fees, tax) in `Units`.
pub fn unit_of_usage_type(usage_type: &str) -> &'static str {
    let has = |part: &str| usage_type.contains(part);
    if has("ByteHrs") || has("TimedStorage") {
        "GB-Months"
    } else if has("Bytes") || has("DataTransfer") {
        "GB"
    } else if has("Request") {
        "Requests"
    } else if has("IOs") || has("IOUsage") {
        "IOs"
    } else if has("Usage") || has("Hours") {
        "Hours"
    } else {
        "Units"
    }
}

/// The region a DBR's usage ran in: its availability zone without the zone's letter; else the
/// region its usage type's prefix names; else `us-east-1` for a usage type without a prefix
/// (the oldest region had none); empty for global products, tax and usages without a type.
pub fn region(product: &str, usage_type: &str, availability_zone: &str) -> String {
    if GLOBAL_PRODUCTS
        .iter()
        .any(|global| product.starts_with(global))
    {
        return String::new();
    }
    if let Some(zone) = availability_zone
        .strip_suffix(|c: char| c.is_ascii_lowercase())
        .filter(|region| region.ends_with(|c: char| c.is_ascii_digit()))
    {
        return zone.to_owned();
    }
    if usage_type.is_empty() {
        return String::new();
    }
    let prefix = usage_type.split_once('-').map(|(prefix, _)| prefix);
    match prefix.and_then(|p| REGION_PREFIXES.iter().find(|(code, _)| *code == p)) {
        Some((_, region)) => (*region).to_owned(),
        None => "us-east-1".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FOCUS's unit format, as its validator checks it: a data size, time or count unit, alone,
    /// joined by `-` to a plural time unit, or per (`/`) a singular one.
    fn is_focus_unit(unit: &str) -> bool {
        const SIZES: &[&str] = &[
            "b", "Kb", "Mb", "Gb", "Tb", "Pb", "Eb", "B", "KB", "MB", "GB", "TB", "PB", "EB",
            "Kib", "Mib", "Gib", "Tib", "Pib", "Eib", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB",
        ];
        const PLURAL: &[&str] = &["Years", "Months", "Days", "Hours", "Minutes", "Seconds"];
        let count = |text: &str| {
            !text.is_empty()
                && text.split(' ').all(|word| {
                    word.starts_with(|c: char| c.is_ascii_alphabetic())
                        && word.chars().all(|c| c.is_ascii_alphanumeric())
                })
        };
        let unit_part = |text: &str| SIZES.contains(&text) || count(text);
        match unit.rsplit_once('-') {
            Some((unit, time)) => PLURAL.contains(&time) && unit_part(unit),
            None => unit_part(unit),
        }
    }

    #[test]
    fn aws_units_read_as_focus_units() {
        for (aws, focus) in [
            ("Hrs", "Hours"),
            ("GB-Mo", "GB-Months"),
            ("GB", "GB"),
            ("Requests", "Requests"),
            ("ReadCapacityUnit-Hrs", "ReadCapacityUnit-Hours"),
            ("Lambda-GB-Second", "Lambda GB-Seconds"),
            ("vCPU-Hours", "vCPU-Hours"),
            ("1K Requests", "K Requests"),
            ("Dollar", "Dollar"),
            ("%", "Units"),
        ] {
            assert_eq!(focus_unit(aws).as_deref(), Some(focus), "{aws}");
            assert!(is_focus_unit(focus), "{focus}");
        }
        assert_eq!(focus_unit(""), None);
        assert_eq!(focus_unit("None"), None);
    }

    proptest::proptest! {
        #[test]
        fn every_unit_reads_as_a_focus_unit(raw in "\\PC{0,24}") {
            if let Some(unit) = focus_unit(&raw) {
                proptest::prop_assert!(is_focus_unit(&unit), "{raw:?} gave {unit:?}");
            }
        }
    }

    #[test]
    fn a_dbr_usage_type_names_its_unit() {
        for (usage_type, unit) in [
            ("BoxUsage:m4.large", "Hours"),
            ("USW2-HeavyUsage:t1.micro", "Hours"),
            ("TimedStorage-ByteHrs", "GB-Months"),
            ("DataTransfer-Out-Bytes", "GB"),
            ("EU-Requests-Tier2-HTTPS", "Requests"),
            ("KMS-Requests", "Requests"),
            ("EBS:VolumeIOUsage", "IOs"),
            ("", "Units"),
        ] {
            assert_eq!(unit_of_usage_type(usage_type), unit, "{usage_type}");
            assert!(is_focus_unit(unit));
        }
    }

    fn item(product: &str, usage_type: &str, description: &str) -> LineItemFields<'static> {
        LineItemFields {
            product: product.to_owned().leak().as_bytes(),
            usage_type: usage_type.to_owned().leak().as_bytes(),
            description: description.to_owned().leak().as_bytes(),
            negative: false,
            undated: false,
            no_quantity: false,
            marketplace: false,
        }
    }

    #[test]
    fn each_charge_category_from_rows_shaped_like_aws() {
        use ChargeCategory::*;
        let ec2 = "Amazon Elastic Compute Cloud";
        let cases = [
            (item("", "", "Tax of type VAT"), Tax),
            (
                LineItemFields {
                    negative: true,
                    ..item("", "", "Tax of type VAT")
                },
                Tax,
            ),
            (
                LineItemFields {
                    negative: true,
                    ..item(ec2, "", "AWS Credits, promotional")
                },
                Credit,
            ),
            (
                LineItemFields {
                    negative: true,
                    ..item(ec2, "", "Refund for the SLA breach of 2017-03")
                },
                Refund,
            ),
            (
                LineItemFields {
                    undated: true,
                    ..item("AWS Support (Business)", "", "AWS Support (Business)")
                },
                Support,
            ),
            (
                LineItemFields {
                    marketplace: true,
                    ..item("Trend Micro Deep Security", "BoxUsage", "$0.05 per hour")
                },
                Marketplace,
            ),
            (
                item(
                    ec2,
                    "USW2-HeavyUsage:t1.micro",
                    "USD 0.005 hourly fee per Linux/UNIX, t1.micro instance",
                ),
                RiFee,
            ),
            (
                LineItemFields {
                    no_quantity: true,
                    ..item(
                        "Amazon Route 53",
                        "Route53-Domains",
                        "Renewal of example.com",
                    )
                },
                Fee,
            ),
            (
                LineItemFields {
                    undated: true,
                    ..item(ec2, "ElasticIP:IdleAddress", "$5 monthly fee")
                },
                Fee,
            ),
            (
                item(
                    ec2,
                    "BoxUsage:m1.small",
                    "$0.044 per On Demand Linux m1.small Instance Hour",
                ),
                Usage,
            ),
        ];
        for (fields, expected) in cases {
            assert_eq!(
                ChargeCategory::of_line_item(&fields),
                expected,
                "{:?}",
                String::from_utf8_lossy(fields.description)
            );
        }
        for category in ChargeCategory::ALL {
            assert_eq!(
                ChargeCategory::from_index(category.index() as u8),
                Some(category)
            );
        }
    }

    #[test]
    fn each_cur_line_item_type_has_its_category() {
        use ChargeCategory::*;
        let ec2 = b"Amazon Elastic Compute Cloud";
        let cases: [(&str, &[u8], bool, ChargeCategory); 22] = [
            ("Usage", ec2, false, Usage),
            ("DiscountedUsage", ec2, false, Usage),
            ("SavingsPlanCoveredUsage", ec2, false, Usage),
            ("SavingsPlanNegation", ec2, false, Usage),
            ("Fee", b"Amazon Registrar", false, Fee),
            ("RIFee", ec2, false, RiFee),
            (
                "SavingsPlanUpfrontFee",
                b"Savings Plans for AWS Compute usage",
                false,
                Fee,
            ),
            (
                "SavingsPlanRecurringFee",
                b"Savings Plans for AWS Compute usage",
                false,
                Fee,
            ),
            ("Tax", ec2, false, Tax),
            ("Credit", ec2, false, Credit),
            ("Refund", ec2, false, Refund),
            ("Discount", ec2, false, Credit),
            ("BundledDiscount", ec2, false, Credit),
            ("PrivateRateDiscount", ec2, false, Credit),
            ("EdpDiscount", ec2, false, Credit),
            ("SppDiscount", ec2, false, Credit),
            ("RiVolumeDiscount", ec2, false, Credit),
            ("Fee", b"AWS Support (Business)", false, Support),
            ("Usage", b"AWSSupportBusiness", false, Support),
            ("Usage", b"Trend Micro Deep Security", true, Marketplace),
            ("Tax", b"Trend Micro Deep Security", true, Tax),
            ("SomethingAwsAddsLater", ec2, false, Usage),
        ];
        for (line_item_type, product, marketplace, expected) in cases {
            assert_eq!(
                ChargeCategory::of_line_item_type(line_item_type.as_bytes(), product, marketplace),
                expected,
                "{line_item_type}"
            );
        }
    }

    #[test]
    fn the_region_from_zone_prefix_or_neither() {
        let ec2 = "Amazon Elastic Compute Cloud";
        let cases = [
            (ec2, "BoxUsage", "us-east-1c", "us-east-1"),
            (
                ec2,
                "APS2-BoxUsage:t2.micro",
                "ap-southeast-2a",
                "ap-southeast-2",
            ),
            (ec2, "USW2-EBS:VolumeUsage.gp2", "", "us-west-2"),
            (ec2, "EU-BoxUsage:m1.small", "", "eu-west-1"),
            (ec2, "USW1-USE1-AWS-In-Bytes", "", "us-west-1"),
            (ec2, "DataTransfer-Out-Bytes", "", "us-east-1"),
            ("Amazon CloudFront", "EU-DataTransfer-Out-Bytes", "", ""),
            ("Amazon Route 53", "HostedZone", "", ""),
            ("AWS Support (Business)", "", "", ""),
            ("", "", "", ""),
        ];
        for (product, usage_type, zone, expected) in cases {
            assert_eq!(
                region(product, usage_type, zone),
                expected,
                "{usage_type} {zone}"
            );
        }
    }

    #[test]
    fn the_purchase_option() {
        assert_eq!(
            PurchaseOption::of(b"BoxUsage:m1.small", true),
            PurchaseOption::Reserved
        );
        assert_eq!(
            PurchaseOption::of(b"USW2-HeavyUsage:t1.micro", false),
            PurchaseOption::Reserved
        );
        assert_eq!(
            PurchaseOption::of(b"USW2-SpotUsage:c4.large", false),
            PurchaseOption::Spot
        );
        assert_eq!(
            PurchaseOption::of(b"BoxUsage:m1.small", false),
            PurchaseOption::OnDemand
        );
    }
}
