use proptest::prelude::*;

use super::*;

fn start() -> impl Strategy<Value = Start> {
    (1970u32..=2033, 1u32..=12, 0u32..=23, 0u32..=59, 1u32..=31).prop_map(|(year, month, hour, minute, day)| {
        let day = day.min(days_in_month(i64::from(year), i64::from(month)) as u32);
        Start {
            year,
            month,
            day,
            hour,
            minute,
        }
    })
}

fn recurrence() -> impl Strategy<Value = Recurrence> {
    prop_oneof![
        Just(Recurrence::NonRecurring),
        (0u32..=31, 0u32..=23, 0u32..=59)
            .prop_filter("some span", |(d, h, m)| d + h + m > 0)
            .prop_map(|(days, hours, minutes)| Recurrence::Interval { days, hours, minutes }),
        (1u32..=7, 1u32..=4).prop_map(|(day, weeks)| Recurrence::Weekly { day, weeks }),
        (1u32..=7, 1u32..=12, 0u32..=4).prop_map(|(day, months, week_order)| Recurrence::MonthlyByWeekday {
            day,
            months,
            week_order
        }),
        (0u32..=31, 1u32..=12).prop_map(|(month_day, months)| Recurrence::MonthlyByDate { month_day, months }),
    ]
}

fn token() -> impl Strategy<Value = ScheduleToken> {
    (start(), 0u32..=31, 0u32..=23, 0u32..=59, any::<bool>(), recurrence()).prop_map(
        |(start, duration_days, duration_hours, duration_minutes, is_gmt, recurrence)| ScheduleToken {
            start,
            duration_days,
            duration_hours,
            duration_minutes,
            is_gmt,
            recurrence,
        },
    )
}

proptest! {
    #[test]
    fn tokens_round_trip(ts in prop::collection::vec(token(), 1..15)) {
        let s = write_to_string(&ts).unwrap();
        prop_assert_eq!(s.len(), 16 * ts.len());
        prop_assert_eq!(read_from_string(&s).unwrap(), ts.clone());
        for (i, t) in ts.iter().enumerate() {
            prop_assert_eq!(ScheduleToken::from_json(&t.to_json(), i + 1).unwrap(), *t);
        }
    }

    /// Every string that is accepted writes back to itself; arbitrary strings never panic.
    #[test]
    fn accepted_strings_round_trip(words in prop::collection::vec(any::<u64>(), 1..4)) {
        let s: String = words.iter().map(|w| format!("{w:016X}")).collect();
        if let Ok(ts) = read_from_string(&s) {
            prop_assert_eq!(write_to_string(&ts).unwrap(), s);
        }
    }

    #[test]
    fn garbage_never_panics(s in "\\PC{0,40}") {
        let _ = read_from_string(&s);
    }
}

/// `1033BC7B10100010`: 2019-11-19 01:04 local, 59 minutes (plus 2 hours), every 2 days.
#[test]
fn community_example_field_by_field() {
    let t = read_from_string("1033BC7B10100010").unwrap();
    assert_eq!(t.len(), 1);
    let t = t[0];
    assert_eq!(
        t.start,
        Start {
            year: 2019,
            month: 11,
            day: 19,
            hour: 1,
            minute: 4
        }
    );
    assert_eq!((t.duration_days, t.duration_hours, t.duration_minutes), (0, 2, 59));
    assert!(!t.is_gmt);
    assert_eq!(
        t.recurrence,
        Recurrence::Interval {
            days: 2,
            hours: 0,
            minutes: 0
        }
    );
    assert_eq!(t.encode(), "1033BC7B10100010");
    let j = t.to_json();
    assert_eq!(j["@odata.type"], "#AdminService.SMS_ST_RecurInterval");
    assert_eq!(j["StartTime"], "2019-11-19T01:04:00");
    assert_eq!(j["DaySpan"], 2);
}

/// The SDK's example: a non-recurring token followed by a weekly one.
#[test]
fn sdk_example_field_by_field() {
    let t = read_from_string("7913788000080000").unwrap()[0];
    assert_eq!(
        t.start,
        Start {
            year: 2004,
            month: 7,
            day: 19,
            hour: 8,
            minute: 30
        }
    );
    assert_eq!((t.duration_days, t.duration_hours, t.duration_minutes), (0, 0, 0));
    assert_eq!(t.recurrence, Recurrence::NonRecurring);
    let w = read_from_string("55147880001B2000").unwrap()[0];
    assert_eq!(
        w.start,
        Start {
            year: 2004,
            month: 7,
            day: 20,
            hour: 8,
            minute: 21
        }
    );
    assert_eq!(w.recurrence, Recurrence::Weekly { day: 3, weeks: 1 });
    assert!(!w.is_gmt);
    assert_eq!(write_to_string(&[t, w]).unwrap(), "791378800008000055147880001B2000");
}

#[test]
fn refusals_name_the_field() {
    let msg = |s: &str| read_from_string(s).unwrap_err().to_string();
    assert!(msg("1033BC7B1010001").contains("multiple of 16"));
    assert!(msg("").contains("multiple of 16"));
    assert!(msg("1033bc7b10100010").contains("uppercase hex"));
    assert!(msg("1033BC7G10100010").contains("hex"));
    assert!(msg("1033BC7B10300010").contains("unknown schedule kind 6"));
    assert!(
        msg("1033BC7B10100016").contains("bits 2-1"),
        "{}",
        msg("1033BC7B10100016")
    );
    // Start minute 63.
    assert!(msg("FC33BC7B10100010").contains("start minute is 63"));
    // Month 13.
    assert!(msg("1033DC7B10100010").contains("start month is 13"));
    // 31 November.
    assert!(msg("103FBC7B10100010").contains("2019-11-31 does not exist"));
    // Weekly with Day 0.
    assert!(
        msg("5514788000182000").contains("Day is 0"),
        "{}",
        msg("5514788000182000")
    );
    // A second token is numbered.
    assert!(msg("1033BC7B10100010FFFFFFFFFFFFFFFF").starts_with("token 2"));
    // JSON: unknown type, unknown property, wrong type.
    let bad = |v: serde_json::Value| {
        ScheduleToken::from_json(v.as_object().unwrap(), 1)
            .unwrap_err()
            .to_string()
    };
    assert!(
        bad(serde_json::json!({"@odata.type": "#AdminService.SMS_ST_Daily"})).contains("unknown schedule token type")
    );
    assert!(
        bad(serde_json::json!({"@odata.type": "#AdminService.SMS_ST_RecurWeekly", "DaySpan": 1}))
            .contains("no property")
    );
    assert!(
        bad(serde_json::json!({"@odata.type": "#AdminService.SMS_ST_RecurWeekly", "Day": "Mon"}))
            .contains("whole number")
    );
    assert!(bad(serde_json::json!({"@odata.type": "#AdminService.SMS_ST_RecurWeekly", "Day": 9})).contains("Day is 9"));
}

#[test]
fn leap_years() {
    assert_eq!(days_in_month(2024, 2), 29);
    assert_eq!(days_in_month(2100, 2), 28);
    assert_eq!(days_in_month(2000, 2), 29);
    assert!(
        read_from_string(
            &ScheduleToken {
                start: Start {
                    year: 2024,
                    month: 2,
                    day: 29,
                    hour: 0,
                    minute: 0
                },
                duration_days: 0,
                duration_hours: 0,
                duration_minutes: 0,
                is_gmt: true,
                recurrence: Recurrence::NonRecurring,
            }
            .encode()
        )
        .is_ok()
    );
}

// ---- occurrences ----

fn ny() -> TimeZone {
    TimeZone::get("America/New_York").unwrap()
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn tok(y: u32, mo: u32, d: u32, h: u32, mi: u32, is_gmt: bool, recurrence: Recurrence) -> ScheduleToken {
    ScheduleToken {
        start: Start {
            year: y,
            month: mo,
            day: d,
            hour: h,
            minute: mi,
        },
        duration_days: 0,
        duration_hours: 0,
        duration_minutes: 0,
        is_gmt,
        recurrence,
    }
}

#[test]
fn daily_local_time_across_daylight_saving() {
    let daily = tok(
        2026,
        3,
        1,
        2,
        30,
        false,
        Recurrence::Interval {
            days: 1,
            hours: 0,
            minutes: 0,
        },
    );
    // 2026-03-08 02:30 does not exist in New York: it happens at 03:30 EDT (07:30Z).
    assert_eq!(
        daily.next_after(at("2026-03-07T17:00:00Z"), &ny()),
        Some(at("2026-03-08T07:30:00Z"))
    );
    // The day after, 02:30 EDT again (06:30Z).
    assert_eq!(
        daily.next_after(at("2026-03-08T07:30:00Z"), &ny()),
        Some(at("2026-03-09T06:30:00Z"))
    );
    // 2026-11-01 01:30 happens twice: the first one (EDT, 05:30Z) counts.
    let fold = tok(
        2026,
        10,
        1,
        1,
        30,
        false,
        Recurrence::Interval {
            days: 1,
            hours: 0,
            minutes: 0,
        },
    );
    assert_eq!(
        fold.next_after(at("2026-11-01T00:00:00Z"), &ny()),
        Some(at("2026-11-01T05:30:00Z"))
    );
    // The same token in UTC ignores the zone.
    let utc = ScheduleToken { is_gmt: true, ..daily };
    assert_eq!(
        utc.next_after(at("2026-03-07T17:00:00Z"), &ny()),
        Some(at("2026-03-08T02:30:00Z"))
    );
}

#[test]
fn month_ends_and_last_weekdays() {
    let last_day = tok(
        2026,
        1,
        31,
        10,
        0,
        true,
        Recurrence::MonthlyByDate {
            month_day: 0,
            months: 1,
        },
    );
    assert_eq!(
        last_day.next_after(at("2026-02-01T00:00:00Z"), &ny()),
        Some(at("2026-02-28T10:00:00Z"))
    );
    assert_eq!(
        last_day.next_after(at("2026-02-28T10:00:00Z"), &ny()),
        Some(at("2026-03-31T10:00:00Z"))
    );
    let the_31st = tok(
        2026,
        1,
        31,
        10,
        0,
        true,
        Recurrence::MonthlyByDate {
            month_day: 31,
            months: 1,
        },
    );
    assert_eq!(
        the_31st.next_after(at("2026-04-01T00:00:00Z"), &ny()),
        Some(at("2026-04-30T10:00:00Z"))
    );
    let leap = tok(
        2024,
        1,
        31,
        0,
        0,
        true,
        Recurrence::MonthlyByDate {
            month_day: 0,
            months: 1,
        },
    );
    assert_eq!(
        leap.next_after(at("2024-02-01T00:00:00Z"), &ny()),
        Some(at("2024-02-29T00:00:00Z"))
    );

    let last_friday = tok(
        2026,
        1,
        1,
        9,
        0,
        true,
        Recurrence::MonthlyByWeekday {
            day: 6,
            months: 1,
            week_order: 0,
        },
    );
    assert_eq!(
        last_friday.next_after(at("2026-11-01T00:00:00Z"), &ny()),
        Some(at("2026-11-27T09:00:00Z"))
    );
    let second_tuesday = tok(
        2026,
        1,
        1,
        9,
        0,
        true,
        Recurrence::MonthlyByWeekday {
            day: 3,
            months: 1,
            week_order: 2,
        },
    );
    assert_eq!(
        second_tuesday.next_after(at("2026-11-01T00:00:00Z"), &ny()),
        Some(at("2026-11-10T09:00:00Z"))
    );
    let quarterly = tok(
        2026,
        1,
        15,
        9,
        0,
        true,
        Recurrence::MonthlyByDate {
            month_day: 15,
            months: 3,
        },
    );
    assert_eq!(
        quarterly.next_after(at("2026-02-01T00:00:00Z"), &ny()),
        Some(at("2026-04-15T09:00:00Z"))
    );
}

#[test]
fn weekly_interval_and_once() {
    // Every other Tuesday from Monday 2026-01-05: 01-06, 01-20, 02-03, …
    let fortnightly = tok(2026, 1, 5, 8, 0, true, Recurrence::Weekly { day: 3, weeks: 2 });
    assert_eq!(
        fortnightly.next_after(at("2026-01-01T00:00:00Z"), &ny()),
        Some(at("2026-01-06T08:00:00Z"))
    );
    assert_eq!(
        fortnightly.next_after(at("2026-01-07T00:00:00Z"), &ny()),
        Some(at("2026-01-20T08:00:00Z"))
    );
    let every8h = tok(
        2026,
        1,
        1,
        0,
        0,
        true,
        Recurrence::Interval {
            days: 0,
            hours: 8,
            minutes: 0,
        },
    );
    assert_eq!(
        every8h.next_after(at("2026-06-15T09:00:00Z"), &ny()),
        Some(at("2026-06-15T16:00:00Z"))
    );
    let once = tok(2026, 12, 24, 18, 0, true, Recurrence::NonRecurring);
    assert_eq!(
        once.next_after(at("2026-12-01T00:00:00Z"), &ny()),
        Some(at("2026-12-24T18:00:00Z"))
    );
    assert_eq!(once.next_after(at("2026-12-24T18:00:00Z"), &ny()), None);
    // Several tokens: the earliest wins.
    assert_eq!(
        next_after(&[once, every8h], at("2026-12-24T17:00:00Z"), &ny()),
        Some(at("2026-12-24T18:00:00Z"))
    );
}

proptest! {
    /// The next occurrence is after `after`, no earlier than the start, really the first one,
    /// and later instants never get earlier occurrences.
    #[test]
    fn occurrences_are_ordered(t in token(), offset in 0i64..(60 * 86_400 * 365 * 3), gap in 1i64..(86_400 * 40)) {
        let zone = ny();
        let base = at("2024-01-01T00:00:00Z");
        let after = base.checked_add(jiff::SignedDuration::from_secs(offset)).unwrap();
        if let Some(next) = t.next_after(after, &zone) {
            prop_assert!(next > after);
            let just_before = next.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap();
            prop_assert_eq!(t.next_after(just_before, &zone), Some(next), "not the first occurrence");
            let later = after.checked_add(jiff::SignedDuration::from_secs(gap)).unwrap();
            if let Some(n2) = t.next_after(later, &zone) {
                prop_assert!(n2 >= next);
            }
        }
    }
}
