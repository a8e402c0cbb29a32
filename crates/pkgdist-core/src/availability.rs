//! A DP's availability schedule (ConfigMgr's Schedule tab for a remote DP): for each hour of
//! the week, in the site's local time, which package priorities may be sent.
//!
//! Written as 168 digits, Sunday 00:00 first (hour of week = day × 24 + hour, day 0 Sunday):
//! `0` open for all priorities, `1` medium and high only, `2` high only, `3` closed. The empty
//! string means open at all hours, the default.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// What one hour allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Open = 0,
    MediumAndHigh = 1,
    HighOnly = 2,
    Closed = 3,
}

impl Usage {
    /// Whether a package of `priority` (1 high, 2 medium, 3 low) may be sent.
    pub fn allows(self, priority: u32) -> bool {
        match self {
            Usage::Open => true,
            Usage::MediumAndHigh => priority <= 2,
            Usage::HighOnly => priority <= 1,
            Usage::Closed => false,
        }
    }

    fn digit(self) -> char {
        match self {
            Usage::Open => '0',
            Usage::MediumAndHigh => '1',
            Usage::HighOnly => '2',
            Usage::Closed => '3',
        }
    }
}

pub const HOURS: usize = 7 * 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability([Usage; HOURS]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AvailabilityError {
    #[error("an availability schedule has {HOURS} digits (one per hour of the week, Sunday 00:00 first), not {0}")]
    Length(usize),
    #[error("hour {hour} of the week (day {day}, {h:02}:00) is {found:?}: use 0 open, 1 medium and high, 2 high only, 3 closed", day = hour / 24, h = hour % 24)]
    Digit { hour: usize, found: char },
}

impl Default for Availability {
    fn default() -> Self {
        Self([Usage::Open; HOURS])
    }
}

impl Availability {
    pub fn parse(s: &str) -> Result<Self, AvailabilityError> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        let n = s.chars().count();
        if n != HOURS {
            return Err(AvailabilityError::Length(n));
        }
        let mut out = [Usage::Open; HOURS];
        for (hour, (slot, c)) in out.iter_mut().zip(s.chars()).enumerate() {
            *slot = match c {
                '0' => Usage::Open,
                '1' => Usage::MediumAndHigh,
                '2' => Usage::HighOnly,
                '3' => Usage::Closed,
                found => return Err(AvailabilityError::Digit { hour, found }),
            };
        }
        Ok(Self(out))
    }

    /// The canonical text: empty when open at all hours.
    pub fn format(&self) -> String {
        if self.0.iter().all(|u| *u == Usage::Open) {
            return String::new();
        }
        self.0.iter().map(|u| u.digit()).collect()
    }

    pub fn set(&mut self, hour_of_week: usize, usage: Usage) {
        if let Some(slot) = self.0.get_mut(hour_of_week) {
            *slot = usage;
        }
    }

    /// What the hour holding `at` (in `zone`) allows.
    pub fn at(&self, at: Timestamp, zone: &TimeZone) -> Usage {
        let z = at.to_zoned(zone.clone());
        let day = usize::from(z.weekday().to_sunday_zero_offset().unsigned_abs());
        let hour = usize::try_from(z.hour()).unwrap_or(0);
        self.0[(day * 24 + hour) % HOURS]
    }

    /// The first moment at or after `after` when `priority` may be sent; `None` if never.
    pub fn next_allowed(&self, priority: u32, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        if self.at(after, zone).allows(priority) {
            return Some(after);
        }
        // Hour starts, one by one, over a little more than a week (DST shifts included).
        let z = after.to_zoned(zone.clone());
        let mut t = z
            .with()
            .minute(0)
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .timestamp();
        for _ in 0..HOURS + 2 {
            t = t.checked_add(jiff::SignedDuration::from_hours(1)).ok()?;
            if self.at(t, zone).allows(priority) {
                return Some(t);
            }
        }
        None
    }
}

/// ConfigMgr's "limited to specified maximum transfer rates by hour": 24 comma-separated
/// percentages (0-100) of each hour spent sending, local midnight first.
pub fn parse_hourly_percent(s: &str) -> Result<[u8; 24], HourlyPercentError> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 24 {
        return Err(HourlyPercentError::Count(parts.len()));
    }
    let mut out = [0u8; 24];
    for (hour, (slot, p)) in out.iter_mut().zip(parts).enumerate() {
        *slot = p
            .parse::<u8>()
            .ok()
            .filter(|v| *v <= 100)
            .ok_or_else(|| HourlyPercentError::Percent {
                hour,
                found: p.to_owned(),
            })?;
    }
    Ok(out)
}

/// Why a list of hourly percentages cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HourlyPercentError {
    #[error("24 comma-separated percentages are needed (one per hour from local midnight), not {0}")]
    Count(usize),
    #[error("hour {hour:02}:00 has {found:?}: a percentage is 0-100")]
    Percent { hour: usize, found: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_round_trips(digits in proptest::collection::vec(0u8..4, HOURS)) {
            let s: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
            let a = Availability::parse(&s).unwrap();
            let again = Availability::parse(&a.format()).unwrap();
            prop_assert_eq!(&again, &a);
            if digits.iter().any(|d| *d != 0) {
                prop_assert_eq!(a.format(), s);
            }
        }
    }

    #[test]
    fn hourly_percentages() {
        let mut v = vec!["100"; 24];
        v[9] = "50";
        let p = parse_hourly_percent(&v.join(",")).unwrap();
        assert_eq!((p[0], p[9]), (100, 50));
        assert_eq!(parse_hourly_percent("100,50"), Err(HourlyPercentError::Count(2)));
        v[3] = "101";
        let e = parse_hourly_percent(&v.join(",")).unwrap_err();
        assert_eq!(
            e,
            HourlyPercentError::Percent {
                hour: 3,
                found: "101".into()
            }
        );
        assert!(e.to_string().contains("hour 03:00"), "{e}");
    }

    #[test]
    fn bad_text_says_where() {
        assert_eq!(Availability::parse("012"), Err(AvailabilityError::Length(3)));
        let mut s = "0".repeat(HOURS);
        s.replace_range(30..31, "x");
        let e = Availability::parse(&s).unwrap_err();
        assert_eq!(e, AvailabilityError::Digit { hour: 30, found: 'x' });
        assert!(e.to_string().contains("day 1, 06:00"), "{e}");
    }

    #[test]
    fn priorities_per_hour_and_the_next_opening() {
        let utc = TimeZone::UTC;
        // 2026-11-22 is a Sunday. Sunday 10:00 high only, 11:00 closed, 12:00 medium and high.
        let mut a = Availability::default();
        a.set(10, Usage::HighOnly);
        a.set(11, Usage::Closed);
        a.set(12, Usage::MediumAndHigh);
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let t = at("2026-11-22T10:30:00Z");
        assert!(a.at(t, &utc).allows(1));
        assert!(!a.at(t, &utc).allows(2));
        assert_eq!(a.next_allowed(1, t, &utc), Some(t));
        assert_eq!(a.next_allowed(2, t, &utc), Some(at("2026-11-22T12:00:00Z")));
        assert_eq!(a.next_allowed(3, t, &utc), Some(at("2026-11-22T13:00:00Z")));
        // The same hour a week later is the same slot.
        assert!(!a.at(at("2026-11-29T11:59:59Z"), &utc).allows(1));
        let closed = Availability::parse(&"3".repeat(HOURS)).unwrap();
        assert_eq!(closed.next_allowed(1, t, &utc), None);
        // Local time: 10:30 in New York is 15:30 UTC.
        let ny = TimeZone::get("America/New_York").unwrap();
        assert!(!a.at(at("2026-11-22T15:30:00Z"), &ny).allows(2));
    }
}
