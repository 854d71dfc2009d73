//! Parsing and printing of the units people type and read: transfer rates
//! (`5MiB/s`), durations (`90s`, `1h`), byte counts and Unix times.

/// Largest per-torrent rate the API accepts (the engine's `int` limit).
pub const MAX_RATE_BPS: u64 = 2_147_483_647;

/// A per-torrent limit: bytes per second, or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Unlimited,
    Bps(u64),
}

impl Rate {
    /// The API's representation: `null` for unlimited.
    #[must_use]
    pub fn as_api(self) -> Option<u64> {
        match self {
            Rate::Unlimited => None,
            Rate::Bps(v) => Some(v),
        }
    }
}

/// Splits `12.5MiB` into (`12.5`, `MiB`).
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

/// Multiplies a decimal string by `unit` exactly enough for byte counts.
fn scaled(number: &str, unit: u64) -> Option<u64> {
    if number.is_empty() || number.matches('.').count() > 1 {
        return None;
    }
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.len() > 9 {
        return None;
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut total = int.checked_mul(unit)?;
    if !frac.is_empty() {
        let digits: u64 = frac.parse().ok()?;
        let scale = 10_u64.pow(u32::try_from(frac.len()).ok()?);
        let part = u128::from(digits) * u128::from(unit) / u128::from(scale);
        total = total.checked_add(u64::try_from(part).ok()?)?;
    }
    Some(total)
}

fn byte_unit(unit: &str) -> Option<u64> {
    Some(match unit {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1_000,
        "KiB" | "Ki" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" | "Mi" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" | "Gi" => 1 << 30,
        _ => return None,
    })
}

/// Parses a rate: `unlimited`, or a number of bytes per second with an
/// optional unit (`B`, `kB`/`KB`, `KiB`, `MB`, `MiB`, `GB`, `GiB`) and an
/// optional `/s`: `5MiB/s`, `500kB`, `1.5MB/s`, `65536`.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let t = text.trim();
    if matches!(t, "unlimited" | "none") {
        return Ok(Rate::Unlimited);
    }
    let body = t.strip_suffix("/s").unwrap_or(t);
    let (number, unit) = split_number(body);
    let problem = || {
        format!(
            "`{text}` is not a rate: use e.g. `5MiB/s`, `500kB/s`, `65536` (bytes/s) or `unlimited`"
        )
    };
    let unit = byte_unit(unit).ok_or_else(problem)?;
    let bps = scaled(number, unit).ok_or_else(problem)?;
    if bps == 0 {
        return Err(format!(
            "`{text}` is zero bytes/s; say `unlimited` to lift the limit"
        ));
    }
    if bps > MAX_RATE_BPS {
        return Err(format!(
            "`{text}` is above the largest limit, {MAX_RATE_BPS} bytes/s"
        ));
    }
    Ok(Rate::Bps(bps))
}

/// Parses a duration: a number with an optional unit `ms`, `s` (the
/// default), `m`, `h` or `d`: `10`, `1.5s`, `250ms`, `30m`, `7d`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, unit) = split_number(t);
    let millis_per = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{text}` is not a duration: use e.g. `10`, `10s`, `250ms`, `30m`, `1h`, `7d`"
            ));
        }
    };
    let millis = scaled(number, millis_per)
        .ok_or_else(|| format!("`{text}` is not a duration: use e.g. `10s`, `30m`, `1h`"))?;
    Ok(std::time::Duration::from_millis(millis))
}

/// `1536` → `1.5 KiB` (binary units, one decimal).
#[must_use]
#[allow(clippy::cast_precision_loss, reason = "display only")]
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `1536` → `1.5 KiB/s`.
#[must_use]
pub fn format_rate(bps: u64) -> String {
    format!("{}/s", format_bytes(bps))
}

/// `0.4567` → `45.7%`.
#[must_use]
pub fn format_progress(progress: f64) -> String {
    format!("{:.1}%", (progress * 100.0).clamp(0.0, 100.0))
}

/// Unix seconds → `2026-11-27 10:00:00Z` (UTC, no time-zone database).
#[must_use]
pub fn format_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("5MiB/s"), Ok(Rate::Bps(5 * 1024 * 1024)));
        assert_eq!(parse_rate("1MiB/s"), Ok(Rate::Bps(1_048_576)));
        assert_eq!(parse_rate("500kB/s"), Ok(Rate::Bps(500_000)));
        assert_eq!(parse_rate("1.5MB"), Ok(Rate::Bps(1_500_000)));
        assert_eq!(parse_rate("0.5KiB/s"), Ok(Rate::Bps(512)));
        assert_eq!(parse_rate("65536"), Ok(Rate::Bps(65_536)));
        assert_eq!(parse_rate("1 GiB/s"), Ok(Rate::Bps(1 << 30)));
        assert_eq!(parse_rate("unlimited"), Ok(Rate::Unlimited));
        assert_eq!(Rate::Unlimited.as_api(), None);
        assert_eq!(Rate::Bps(3).as_api(), Some(3));
        for bad in [
            "", "fast", "5XB/s", "1.2.3MB", "-1", "0", "0MiB/s", "3GiB/s", "/s", ".",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "x", "10y", "-1s", "1..2"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_are_stable() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(format_rate(2048), "2.0 KiB/s");
        assert_eq!(format_progress(0.4567), "45.7%");
        assert_eq!(format_progress(1.2), "100.0%");
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00:00Z");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59Z");
    }
}
