//! The `UpdatedTime` format of events: Go layout `2006-01-02T15:04:05.000000Z`, i.e. UTC,
//! microseconds (truncated, as Go's formatter does), literal `Z`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats a Unix time (seconds, plus sub-second nanoseconds) as `UpdatedTime`.
pub fn updated_time(unix_secs: i64, nanos: u32) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        nanos / 1000
    )
}

/// The current time as the `(Timestamp, UpdatedTime)` pair of an event: one instant for both.
pub fn now() -> (i64, String) {
    let (secs, nanos) = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        // A clock before 1970 is not worth failing an event for.
        Err(_) => (0, 0),
    };
    (secs, updated_time(secs, nanos))
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); H. Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_spec_examples() {
        // Timestamp/UpdatedTime pairs from spec §1.11 (a) and (f).
        assert_eq!(
            updated_time(1_753_343_112, 418_203_999),
            "2025-07-24T07:45:12.418203Z"
        );
        assert_eq!(
            updated_time(1_686_491_023, 291_471_000),
            "2023-06-11T13:43:43.291471Z"
        );
    }

    #[test]
    fn edges() {
        assert_eq!(updated_time(0, 0), "1970-01-01T00:00:00.000000Z");
        // Leap day, and the last second of a year.
        assert_eq!(updated_time(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            updated_time(1_735_689_599, 0),
            "2024-12-31T23:59:59.000000Z"
        );
        assert_eq!(updated_time(-1, 0), "1969-12-31T23:59:59.000000Z");
    }

    #[test]
    fn now_is_consistent() {
        let (secs, text) = now();
        assert!(secs > 1_700_000_000);
        assert_eq!(text[..20], updated_time(secs, 0)[..20]);
        assert_eq!(text.len(), "2006-01-02T15:04:05.000000Z".len());
    }
}
