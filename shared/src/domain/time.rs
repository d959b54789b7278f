use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch, UTC. Stored in DynamoDB as a number so TTL and conditions can use it.
pub type UnixTime = i64;

/// Formats a Unix time as RFC 3339 UTC (`2026-11-23T14:09:02Z`), the API's time format.
pub fn rfc3339(t: UnixTime) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_z() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_442_942), "2026-11-23T14:09:02Z");
    }
}
