//! A usage's kind: what it is less its resource and tags (product, usage type, operation, zone,
//! invoice, description, category and what derives from them). A month's usages share few
//! kinds (88 in the bench's realistic and hostile months, of 2.45 M usages in the latter), so a
//! version stores each kind once (`usage_kinds`) and each usage its kind's id, resource and
//! tags (`daily_usages`): PostgreSQL takes narrow rows more than twice as fast (README, "Usages
//! and their kinds").

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use crate::report::usage::Usage;

/// Gives each kind of a statement's usages an id, in the order the usages come. The same
/// usages in the same order get the same ids: the kinds are copied in one pass over the
/// usages and the usages in another, so nothing is held between the two but this table.
///
/// The table is bounded: once it holds [`KindIds::MAX_BYTES`] of kinds, it is emptied and
/// begins again, and a kind seen before gets a new id (a second row for the same kind, which
/// costs a row and changes no answer). A month whose every usage is of another kind (each with
/// its own description, say) stores a kind per usage: the columns it stored before, in twice
/// the rows.
#[derive(Default)]
pub(super) struct KindIds {
    ids: HashMap<Box<[u8]>, u64, FxBuildHasher>,
    bytes: usize,
    next: u64,
    key: Vec<u8>,
}

/// A usage's kind id, and whether this is its first usage (its kind's row is to be written).
pub(super) struct KindId {
    pub id: u64,
    pub new: bool,
}

impl KindIds {
    /// The kinds remembered at most, by the size of their keys.
    pub const MAX_BYTES: usize = 16 << 20;

    pub fn id_of(&mut self, usage: &Usage<'_>) -> KindId {
        kind_key(usage, &mut self.key);
        if let Some(&id) = self.ids.get(self.key.as_slice()) {
            return KindId { id, new: false };
        }
        if self.bytes + self.key.len() > KindIds::MAX_BYTES {
            self.ids.clear();
            self.bytes = 0;
        }
        let id = self.next;
        self.next += 1;
        self.bytes += self.key.len();
        self.ids.insert(self.key.as_slice().into(), id);
        KindId { id, new: true }
    }
}

/// The fields a kind is made of, each length-prefixed, into `key`: everything a kind's row is
/// derived from (region, purchase option, unit and list price included), nothing of the
/// resource or its tags.
fn kind_key(usage: &Usage<'_>, key: &mut Vec<u8>) {
    key.clear();
    key.push(usage.charge_category.index() as u8);
    key.push(u8::from(usage.reserved_instance));
    for field in [
        usage.invoice_id,
        usage.product,
        usage.usage_type,
        usage.operation,
        usage.availability_zone,
        usage.item_description,
        usage.line_item_type,
        usage.region,
        usage.list_rate,
        usage.pricing_unit,
    ] {
        key.extend_from_slice(&(field.len() as u64).to_le_bytes());
        key.extend_from_slice(field.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::dimensions::ChargeCategory;

    fn usage<'a>(resource_id: &'a str, operation: &'a str) -> Usage<'a> {
        Usage {
            charge_category: ChargeCategory::Usage,
            reserved_instance: false,
            invoice_id: "1",
            product: "Amazon Elastic Compute Cloud",
            usage_type: "BoxUsage:m5.large",
            operation,
            availability_zone: "us-east-1a",
            resource_id,
            item_description: "",
            line_item_type: "",
            region: "",
            list_rate: "",
            pricing_unit: "",
            tags: vec![("user:Name", resource_id)],
        }
    }

    #[test]
    fn usages_of_one_kind_share_its_id_whatever_their_resource_and_tags() {
        let mut kinds = KindIds::default();
        let first = kinds.id_of(&usage("i-1", "RunInstances"));
        let other = kinds.id_of(&usage("i-1", "RunInstances:0002"));
        let again = kinds.id_of(&usage("i-2", "RunInstances"));
        assert!(first.new && other.new && !again.new);
        assert_eq!((first.id, other.id, again.id), (0, 1, 0));
        // Fields end where their length says: moving a byte between two fields is another kind.
        let mut shifted = usage("i-1", "RunInstances");
        (shifted.usage_type, shifted.operation) = ("BoxUsage:m5.larg", "eRunInstances");
        assert!(kinds.id_of(&shifted).new);
        let mut reserved = usage("i-1", "RunInstances");
        reserved.reserved_instance = true;
        assert!(kinds.id_of(&reserved).new);
    }

    #[test]
    fn a_full_table_begins_again_and_gives_the_same_ids_to_the_same_usages() {
        let descriptions: Vec<String> = (0..40_000)
            .map(|i| format!("{:0500}", i % 35_000))
            .collect();
        let ids = |kinds: &mut KindIds| -> Vec<(u64, bool)> {
            descriptions
                .iter()
                .map(|description| {
                    let mut usage = usage("i-1", "RunInstances");
                    usage.item_description = description;
                    let kind = kinds.id_of(&usage);
                    (kind.id, kind.new)
                })
                .collect()
        };
        let mut kinds = KindIds::default();
        let first = ids(&mut kinds);
        assert!(kinds.bytes <= KindIds::MAX_BYTES);
        // 35,000 kinds of about 600 bytes do not fit in 16 MiB: the table began again, so the
        // repeated descriptions after it are new kinds with new ids.
        let new = first.iter().filter(|(_, new)| *new).count();
        assert_eq!(new, 40_000);
        assert_eq!(ids(&mut KindIds::default()), first);
        // Every usage's id names a kind whose row was written before it, with its fields.
        let mut written = HashMap::new();
        for ((id, new), description) in first.iter().zip(&descriptions) {
            if *new {
                assert!(written.insert(*id, description).is_none());
            }
            assert_eq!(written[id], description);
        }
    }
}
