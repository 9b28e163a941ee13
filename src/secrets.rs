//! Keeping secrets out of every output. The secrets of this process (the database password in
//! any form of `DATABASE_URL`, AWS secret keys and session tokens) are registered once, when the
//! settings are read; every line written to stdout or stderr (logs, errors, `check`, summaries)
//! passes through [`redact`] first, whichever library produced the text. `Debug` output of the
//! settings holds no secret either (`SecretString`).

use std::borrow::Cow;
use std::io;
use std::sync::RwLock;

use tracing_subscriber::fmt::MakeWriter;

/// What stands in for a secret.
pub const MASK: &str = "***";

/// Query parameters of a PostgreSQL URL that hold a secret (`passfile` is a path: it stays).
const SECRET_PARAMETERS: [&str; 2] = ["password", "sslpassword"];

/// Environment variables that hold secrets the AWS SDK reads.
pub const SECRET_VARIABLES: [&str; 2] = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

/// Shorter values would mask ordinary words; no real secret is that short.
const SHORTEST_SECRET: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret value, and its URL-decoded form when that differs.
pub fn register(secret: &str) {
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    let decoded = url::form_urlencoded::parse(format!("x={secret}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned());
    for value in [Some(secret.to_owned()), decoded].into_iter().flatten() {
        if value.len() >= SHORTEST_SECRET && !secrets.contains(&value) {
            secrets.push(value);
        }
    }
    // The longest first, so that a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers the password(s) of a database URL.
pub fn register_database_url(url: &str) {
    match url::Url::parse(url) {
        Ok(parsed) => {
            if let Some(password) = parsed.password() {
                register(password);
            }
            for (name, value) in parsed.query_pairs() {
                if SECRET_PARAMETERS.contains(&name.as_ref()) {
                    register(&value);
                }
            }
        }
        // Unparsable: the whole URL is the secret, so nothing of it shows.
        Err(_) => register(url),
    }
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut text = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if text.contains(secret.as_str()) {
            text = Cow::Owned(text.replace(secret.as_str(), MASK));
        }
    }
    text
}

/// A database URL as messages may show it: password and secret parameters masked.
pub fn display_database_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(a database URL that cannot be parsed)".into();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(MASK));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if SECRET_PARAMETERS.contains(&name.as_ref()) {
                    MASK.to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // The mask is written as is, not percent-encoded.
    parsed.to_string().replace("%2A%2A%2A", MASK)
}

/// Environment variables of endpoint URLs, which may carry credentials (`http://key:secret@host`).
pub const ENDPOINT_VARIABLES: [&str; 3] = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS",
];

/// Registers the credentials an endpoint URL carries, if any.
pub fn register_endpoint(url: &str) {
    if let Ok(parsed) = url::Url::parse(url) {
        register(parsed.username());
        if let Some(password) = parsed.password() {
            register(password);
        }
    }
}

/// An endpoint URL as messages show it: credentials in it masked.
pub fn display_endpoint(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username(MASK);
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some(MASK));
            }
            parsed.to_string().replace("%2A%2A%2A", MASK)
        }
        _ => url.to_owned(),
    }
}

/// Writes log lines through [`redact`].
pub struct Redacting<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

/// One log event's writer; the formatter writes each event whole.
pub struct RedactingWriter<W>(W);

impl<W: io::Write> io::Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(redact(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_show_no_password_in_any_form() {
        for (url, shown) in [
            (
                "postgres://u:pw-in-userinfo@h:5432/d",
                "postgres://u:***@h:5432/d",
            ),
            (
                "postgres://u@h/db?password=pw-in-query&sslmode=require",
                "postgres://u@h/db?password=***&sslmode=require",
            ),
            (
                "postgres://u@h/db?sslpassword=pw-of-key&passfile=/etc/pgpass",
                "postgres://u@h/db?sslpassword=***&passfile=%2Fetc%2Fpgpass",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/x",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
        ] {
            assert_eq!(display_database_url(url), shown);
            register_database_url(url);
            assert!(!redact(url).contains("pw-"), "{}", redact(url));
        }
    }

    #[test]
    fn endpoint_urls_show_no_credentials() {
        for (url, shown) in [
            (
                "http://key:s3cret-in-url@host:9000/",
                "http://***:***@host:9000/",
            ),
            ("http://keyonly@host/", "http://***@host/"),
            ("http://host:9000", "http://host:9000"),
        ] {
            assert_eq!(display_endpoint(url), shown);
            register_endpoint(url);
            assert!(!redact(url).contains("s3cret"), "{}", redact(url));
        }
    }

    #[test]
    fn registered_secrets_are_masked_also_decoded() {
        register("s3cr%2Ft-key");
        assert_eq!(redact("key s3cr/t-key and s3cr%2Ft-key"), "key *** and ***");
        register("ab");
        assert_eq!(redact("ab stays"), "ab stays", "too short to be a secret");
        let mut out = Vec::new();
        io::Write::write_all(&mut RedactingWriter(&mut out), b"log s3cr/t-key\n").unwrap();
        assert_eq!(out, b"log ***\n");
    }
}
