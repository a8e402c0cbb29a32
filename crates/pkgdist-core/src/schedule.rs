//! ConfigMgr schedule tokens (`SMS_ScheduleToken` and its five kinds) and their interval string
//! encoding: each token is two 32-bit words written as 16 uppercase hex digits, tokens
//! concatenated.
//!
//! ```text
//! word 1: 31–26 start minute, 25–21 start hour, 20–16 start day, 15–12 start month,
//!         11–6 start year − 1970, 5–0 duration minutes
//! word 2: 31–27 duration hours, 26–22 duration days, 21–19 kind, 0 IsGMT, and by kind:
//!         2 RecurInterval          18–13 MinuteSpan, 12–8 HourSpan, 7–3 DaySpan
//!         3 RecurWeekly            18–16 Day, 15–13 ForNumberOfWeeks
//!         4 RecurMonthlyByWeekday  18–16 Day, 15–12 ForNumberOfMonths, 11–9 WeekOrder
//!         5 RecurMonthlyByDate     18–14 MonthDay, 13–10 ForNumberOfMonths
//!         1 NonRecurring           nothing
//! ```
//!
//! Decoding is strict: every field must be in its documented range, the start date must exist,
//! and bits no field uses must be zero. So every accepted string re-encodes to itself, and a
//! refused one is refused with the field that is wrong.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

/// Why a schedule string or token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule string has {0} characters; it must be a multiple of 16 (16 hex digits per token)")]
    Length(usize),
    #[error("token {token}: {chars:?} is not 16 uppercase hex digits (0-9, A-F)")]
    Hex { token: usize, chars: String },
    #[error("token {token}: {field} is {value}, outside {range}")]
    Field {
        token: usize,
        field: &'static str,
        value: i64,
        range: &'static str,
    },
    #[error("token {token}: unknown schedule kind {kind} (1 NonRecurring … 5 RecurMonthlyByDate)")]
    Kind { token: usize, kind: u32 },
    #[error("token {token}: bits {bits} are not used by {kind} and must be zero")]
    Unused {
        token: usize,
        bits: &'static str,
        kind: &'static str,
    },
    #[error("token {token}: the start date {year}-{month:02}-{day:02} does not exist")]
    Date {
        token: usize,
        year: i64,
        month: i64,
        day: i64,
    },
    #[error("token {token}: {0}", token = .1)]
    Json(String, usize),
}

/// When a schedule starts (local time unless `is_gmt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recurrence {
    NonRecurring,
    /// Every `days`/`hours`/`minutes` (ConfigMgr uses one of them at a time).
    Interval {
        days: u32,
        hours: u32,
        minutes: u32,
    },
    /// `day` 1 Sunday … 7 Saturday, every `weeks` (1–4) weeks.
    Weekly {
        day: u32,
        weeks: u32,
    },
    /// `week_order` 0 last, 1 first … 4 fourth `day` of every `months` (1–12) months.
    MonthlyByWeekday {
        day: u32,
        months: u32,
        week_order: u32,
    },
    /// `month_day` (0 = last day) of every `months` (1–12) months.
    MonthlyByDate {
        month_day: u32,
        months: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleToken {
    pub start: Start,
    pub duration_days: u32,
    pub duration_hours: u32,
    pub duration_minutes: u32,
    pub is_gmt: bool,
    pub recurrence: Recurrence,
}

impl Recurrence {
    fn code(self) -> u32 {
        match self {
            Recurrence::NonRecurring => 1,
            Recurrence::Interval { .. } => 2,
            Recurrence::Weekly { .. } => 3,
            Recurrence::MonthlyByWeekday { .. } => 4,
            Recurrence::MonthlyByDate { .. } => 5,
        }
    }

    /// The WMI class of this kind.
    pub fn class_name(self) -> &'static str {
        match self {
            Recurrence::NonRecurring => "SMS_ST_NonRecurring",
            Recurrence::Interval { .. } => "SMS_ST_RecurInterval",
            Recurrence::Weekly { .. } => "SMS_ST_RecurWeekly",
            Recurrence::MonthlyByWeekday { .. } => "SMS_ST_RecurMonthlyByWeekday",
            Recurrence::MonthlyByDate { .. } => "SMS_ST_RecurMonthlyByDate",
        }
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in a month (0 for a month that does not exist).
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Checks a value against an inclusive range.
fn field(
    token: usize,
    name: &'static str,
    v: i64,
    lo: i64,
    hi: i64,
    range: &'static str,
) -> Result<u32, ScheduleError> {
    if v < lo || v > hi {
        return Err(ScheduleError::Field {
            token,
            field: name,
            value: v,
            range,
        });
    }
    Ok(v as u32)
}

impl ScheduleToken {
    /// Checks every field; `token` numbers the token in messages.
    pub fn validate(&self, token: usize) -> Result<(), ScheduleError> {
        let s = self.start;
        let i = |v: u32| i64::from(v);
        field(token, "start year", i(s.year), 1970, 2033, "1970-2033")?;
        field(token, "start month", i(s.month), 1, 12, "1-12")?;
        field(token, "start hour", i(s.hour), 0, 23, "0-23")?;
        field(token, "start minute", i(s.minute), 0, 59, "0-59")?;
        if s.day < 1 || i(s.day) > days_in_month(i(s.year), i(s.month)) {
            return Err(ScheduleError::Date {
                token,
                year: i(s.year),
                month: i(s.month),
                day: i(s.day),
            });
        }
        field(token, "DayDuration", i(self.duration_days), 0, 31, "0-31")?;
        field(token, "HourDuration", i(self.duration_hours), 0, 23, "0-23")?;
        field(token, "MinuteDuration", i(self.duration_minutes), 0, 59, "0-59")?;
        match self.recurrence {
            Recurrence::NonRecurring => {}
            Recurrence::Interval { days, hours, minutes } => {
                field(token, "DaySpan", i(days), 0, 31, "0-31")?;
                field(token, "HourSpan", i(hours), 0, 23, "0-23")?;
                field(token, "MinuteSpan", i(minutes), 0, 59, "0-59")?;
                if days == 0 && hours == 0 && minutes == 0 {
                    return Err(ScheduleError::Field {
                        token,
                        field: "DaySpan/HourSpan/MinuteSpan",
                        value: 0,
                        range: "at least one non-zero",
                    });
                }
            }
            Recurrence::Weekly { day, weeks } => {
                field(token, "Day", i(day), 1, 7, "1 (Sunday)-7 (Saturday)")?;
                field(token, "ForNumberOfWeeks", i(weeks), 1, 4, "1-4")?;
            }
            Recurrence::MonthlyByWeekday {
                day,
                months,
                week_order,
            } => {
                field(token, "Day", i(day), 1, 7, "1 (Sunday)-7 (Saturday)")?;
                field(token, "ForNumberOfMonths", i(months), 1, 12, "1-12")?;
                field(token, "WeekOrder", i(week_order), 0, 4, "0 (last)-4 (fourth)")?;
            }
            Recurrence::MonthlyByDate { month_day, months } => {
                field(token, "MonthDay", i(month_day), 0, 31, "0 (last day)-31")?;
                field(token, "ForNumberOfMonths", i(months), 1, 12, "1-12")?;
            }
        }
        Ok(())
    }

    /// The 16 hex digits of a (valid) token.
    pub fn encode(&self) -> String {
        let s = self.start;
        let w1 = (s.minute << 26)
            | (s.hour << 21)
            | (s.day << 16)
            | (s.month << 12)
            | ((s.year - 1970) << 6)
            | self.duration_minutes;
        let mut w2 = (self.duration_hours << 27)
            | (self.duration_days << 22)
            | (self.recurrence.code() << 19)
            | u32::from(self.is_gmt);
        w2 |= match self.recurrence {
            Recurrence::NonRecurring => 0,
            Recurrence::Interval { days, hours, minutes } => (minutes << 13) | (hours << 8) | (days << 3),
            Recurrence::Weekly { day, weeks } => (day << 16) | (weeks << 13),
            Recurrence::MonthlyByWeekday {
                day,
                months,
                week_order,
            } => (day << 16) | (months << 12) | (week_order << 9),
            Recurrence::MonthlyByDate { month_day, months } => (month_day << 14) | (months << 10),
        };
        format!("{w1:08X}{w2:08X}")
    }

    /// Decodes one token of 16 hex digits (`token` numbers it in messages).
    pub fn decode(hex: &str, token: usize) -> Result<Self, ScheduleError> {
        let bad_hex = || ScheduleError::Hex {
            token,
            chars: hex.to_owned(),
        };
        if hex.len() != 16 || !hex.bytes().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)) {
            return Err(bad_hex());
        }
        let w1 = u32::from_str_radix(&hex[..8], 16).map_err(|_| bad_hex())?;
        let w2 = u32::from_str_radix(&hex[8..], 16).map_err(|_| bad_hex())?;
        let bits = |w: u32, hi: u32, lo: u32| (w >> lo) & ((1 << (hi - lo + 1)) - 1);
        let kind = bits(w2, 21, 19);
        let unused = |mask: u32, which: &'static str, name: &'static str| {
            if w2 & mask != 0 {
                Err(ScheduleError::Unused {
                    token,
                    bits: which,
                    kind: name,
                })
            } else {
                Ok(())
            }
        };
        let recurrence = match kind {
            1 => {
                unused(0x0007_FFFE, "18-1", "SMS_ST_NonRecurring")?;
                Recurrence::NonRecurring
            }
            2 => {
                unused(0x0000_0006, "2-1", "SMS_ST_RecurInterval")?;
                Recurrence::Interval {
                    minutes: bits(w2, 18, 13),
                    hours: bits(w2, 12, 8),
                    days: bits(w2, 7, 3),
                }
            }
            3 => {
                unused(0x0000_1FFE, "12-1", "SMS_ST_RecurWeekly")?;
                Recurrence::Weekly {
                    day: bits(w2, 18, 16),
                    weeks: bits(w2, 15, 13),
                }
            }
            4 => {
                unused(0x0000_01FE, "8-1", "SMS_ST_RecurMonthlyByWeekday")?;
                Recurrence::MonthlyByWeekday {
                    day: bits(w2, 18, 16),
                    months: bits(w2, 15, 12),
                    week_order: bits(w2, 11, 9),
                }
            }
            5 => {
                unused(0x0000_03FE, "9-1", "SMS_ST_RecurMonthlyByDate")?;
                Recurrence::MonthlyByDate {
                    month_day: bits(w2, 18, 14),
                    months: bits(w2, 13, 10),
                }
            }
            k => return Err(ScheduleError::Kind { token, kind: k }),
        };
        let t = ScheduleToken {
            start: Start {
                minute: bits(w1, 31, 26),
                hour: bits(w1, 25, 21),
                day: bits(w1, 20, 16),
                month: bits(w1, 15, 12),
                year: bits(w1, 11, 6) + 1970,
            },
            duration_minutes: bits(w1, 5, 0),
            duration_hours: bits(w2, 31, 27),
            duration_days: bits(w2, 26, 22),
            is_gmt: w2 & 1 == 1,
            recurrence,
        };
        t.validate(token)?;
        Ok(t)
    }

    /// The token as AdminService shows an embedded object: `@odata.type` plus properties.
    pub fn to_json(&self) -> Map<String, Value> {
        let s = self.start;
        let zone = if self.is_gmt { "Z" } else { "" };
        let mut m = json!({
            "@odata.type": format!("#AdminService.{}", self.recurrence.class_name()),
            "DayDuration": self.duration_days,
            "HourDuration": self.duration_hours,
            "MinuteDuration": self.duration_minutes,
            "IsGMT": self.is_gmt,
            "StartTime": format!("{:04}-{:02}-{:02}T{:02}:{:02}:00{zone}", s.year, s.month, s.day, s.hour, s.minute),
        });
        let extra = match self.recurrence {
            Recurrence::NonRecurring => json!({}),
            Recurrence::Interval { days, hours, minutes } => {
                json!({"DaySpan": days, "HourSpan": hours, "MinuteSpan": minutes})
            }
            Recurrence::Weekly { day, weeks } => json!({"Day": day, "ForNumberOfWeeks": weeks}),
            Recurrence::MonthlyByWeekday {
                day,
                months,
                week_order,
            } => json!({"Day": day, "ForNumberOfMonths": months, "WeekOrder": week_order}),
            Recurrence::MonthlyByDate { month_day, months } => {
                json!({"MonthDay": month_day, "ForNumberOfMonths": months})
            }
        };
        if let (Value::Object(m), Value::Object(e)) = (&mut m, extra) {
            m.extend(e);
        }
        match m {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// Reads a token object (as [`ScheduleToken::to_json`] writes it); unknown properties and
    /// wrong types are refused.
    pub fn from_json(m: &Map<String, Value>, token: usize) -> Result<Self, ScheduleError> {
        let err = |msg: String| ScheduleError::Json(msg, token);
        let ty = m
            .get("@odata.type")
            .and_then(Value::as_str)
            .ok_or_else(|| err("missing \"@odata.type\" (e.g. \"#AdminService.SMS_ST_RecurInterval\")".into()))?;
        let class = ty.strip_prefix("#AdminService.").unwrap_or(ty);
        let (allowed, kind): (&[&str], u32) = match class {
            "SMS_ST_NonRecurring" => (&[], 1),
            "SMS_ST_RecurInterval" => (&["DaySpan", "HourSpan", "MinuteSpan"], 2),
            "SMS_ST_RecurWeekly" => (&["Day", "ForNumberOfWeeks"], 3),
            "SMS_ST_RecurMonthlyByWeekday" => (&["Day", "ForNumberOfMonths", "WeekOrder"], 4),
            "SMS_ST_RecurMonthlyByDate" => (&["MonthDay", "ForNumberOfMonths"], 5),
            other => return Err(err(format!("unknown schedule token type {other:?}"))),
        };
        const BASE: [&str; 6] = [
            "@odata.type",
            "DayDuration",
            "HourDuration",
            "MinuteDuration",
            "IsGMT",
            "StartTime",
        ];
        if let Some(k) = m
            .keys()
            .find(|k| !BASE.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
        {
            return Err(err(format!("{class} has no property {k:?}")));
        }
        let num = |k: &'static str, default: i64| -> Result<i64, ScheduleError> {
            match m.get(k) {
                None => Ok(default),
                Some(v) => v
                    .as_i64()
                    .ok_or_else(|| err(format!("{k} must be a whole number, got {v}"))),
            }
        };
        let u = |k: &'static str, default: i64| -> Result<u32, ScheduleError> {
            let v = num(k, default)?;
            u32::try_from(v).map_err(|_| ScheduleError::Field {
                token,
                field: k,
                value: v,
                range: "0 or more",
            })
        };
        let is_gmt = match m.get("IsGMT") {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| err(format!("IsGMT must be true or false, got {v}")))?,
        };
        let start = match m.get("StartTime") {
            None => Start {
                year: 1970,
                month: 2,
                day: 1,
                hour: 0,
                minute: 0,
            },
            Some(v) => parse_start(v.as_str().ok_or_else(|| err("StartTime must be text".into()))?)
                .ok_or_else(|| err(format!("StartTime {v} is not YYYY-MM-DDTHH:MM[:00][Z]")))?,
        };
        let recurrence = match kind {
            1 => Recurrence::NonRecurring,
            2 => Recurrence::Interval {
                days: u("DaySpan", 0)?,
                hours: u("HourSpan", 0)?,
                minutes: u("MinuteSpan", 0)?,
            },
            3 => Recurrence::Weekly {
                day: u("Day", 1)?,
                weeks: u("ForNumberOfWeeks", 1)?,
            },
            4 => Recurrence::MonthlyByWeekday {
                day: u("Day", 1)?,
                months: u("ForNumberOfMonths", 1)?,
                week_order: u("WeekOrder", 0)?,
            },
            _ => Recurrence::MonthlyByDate {
                month_day: u("MonthDay", 0)?,
                months: u("ForNumberOfMonths", 1)?,
            },
        };
        let t = ScheduleToken {
            start,
            duration_days: u("DayDuration", 0)?,
            duration_hours: u("HourDuration", 0)?,
            duration_minutes: u("MinuteDuration", 0)?,
            is_gmt,
            recurrence,
        };
        t.validate(token)?;
        Ok(t)
    }
}

/// `YYYY-MM-DDTHH:MM[:SS][Z]` (seconds must be zero: the encoding has none).
fn parse_start(s: &str) -> Option<Start> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (year, month, day) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let mut t = time.split(':');
    let (hour, minute) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    if let Some(sec) = t.next()
        && sec.parse::<u32>().ok()? != 0
    {
        return None;
    }
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    Some(Start {
        year,
        month,
        day,
        hour,
        minute,
    })
}

// ---- occurrences ----

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Minutes since 1970-01-01T00:00 on the civil (wall) clock.
fn wall_minutes(dt: DateTime) -> i64 {
    days_from_civil(i64::from(dt.year()), i64::from(dt.month()), i64::from(dt.day())) * 1440
        + i64::from(dt.hour()) * 60
        + i64::from(dt.minute())
}

fn from_wall_minutes(m: i64) -> Option<DateTime> {
    let (y, mo, d) = civil_from_days(m.div_euclid(1440));
    let rem = m.rem_euclid(1440);
    DateTime::new(
        i16::try_from(y).ok()?,
        mo as i8,
        d as i8,
        (rem / 60) as i8,
        (rem % 60) as i8,
        0,
        0,
    )
    .ok()
}

impl ScheduleToken {
    fn zone(&self, local: &TimeZone) -> TimeZone {
        if self.is_gmt { TimeZone::UTC } else { local.clone() }
    }

    /// The first occurrence strictly after `after`, in time zone `local` (UTC when IsGMT).
    ///
    /// Occurrences are computed on the wall clock of the zone and then resolved to an instant:
    /// "every day at 02:30" stays at 02:30 local across daylight-saving changes. A wall time in a
    /// spring-forward gap happens at the later reading (02:30 becomes 03:30); in a fall-back
    /// fold, at the first one. RecurMonthlyByDate with MonthDay 0 (or a day the month lacks)
    /// falls on the month's last day; WeekOrder 0 is the month's last such weekday.
    pub fn next_after(&self, after: Timestamp, local: &TimeZone) -> Option<Timestamp> {
        let tz = self.zone(local);
        let s = self.start;
        let start = DateTime::new(
            i16::try_from(s.year).ok()?,
            s.month as i8,
            s.day as i8,
            s.hour as i8,
            s.minute as i8,
            0,
            0,
        )
        .ok()?;
        let resolve = |dt: DateTime| dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp());
        let start_at = resolve(start)?;
        let after_wall = wall_minutes(after.to_zoned(tz.clone()).datetime());
        let first_after = |candidates: &mut dyn Iterator<Item = DateTime>| {
            candidates
                .take(10_000)
                .filter(|dt| *dt >= start)
                .filter_map(resolve)
                .find(|t| *t > after && *t >= start_at)
        };
        let time_of_day = i64::from(s.hour) * 60 + i64::from(s.minute);
        match self.recurrence {
            Recurrence::NonRecurring => (start_at > after).then_some(start_at),
            Recurrence::Interval { days, hours, minutes } => {
                let span = i64::from(days) * 1440 + i64::from(hours) * 60 + i64::from(minutes);
                let s0 = wall_minutes(start);
                // Jump close to `after` (a wall-clock step may be an hour off across DST).
                let k0 = ((after_wall - s0).div_euclid(span) - 2).max(0);
                first_after(&mut (k0..).filter_map(|k| from_wall_minutes(s0 + k * span)))
            }
            Recurrence::Weekly { day, weeks } => {
                let want = i8::try_from(day).ok()?;
                let d0 = wall_minutes(start).div_euclid(1440);
                let first = (0..7)
                    .map(|i| d0 + i)
                    .find(|d| from_wall_minutes(d * 1440).map(|x| x.weekday().to_sunday_one_offset()) == Some(want))?;
                let step = 7 * i64::from(weeks);
                let k0 = ((after_wall.div_euclid(1440) - first).div_euclid(step) - 1).max(0);
                first_after(&mut (k0..).filter_map(|k| from_wall_minutes((first + k * step) * 1440 + time_of_day)))
            }
            Recurrence::MonthlyByWeekday {
                day,
                months,
                week_order,
            } => {
                let weekday = Weekday::from_sunday_one_offset(i8::try_from(day).ok()?).ok()?;
                let nth: i8 = if week_order == 0 { -1 } else { week_order as i8 };
                self.monthly(
                    start,
                    after_wall,
                    months,
                    &|y, m| Date::new(y, m, 1).ok()?.nth_weekday_of_month(nth, weekday).ok(),
                    &first_after,
                )
            }
            Recurrence::MonthlyByDate { month_day, months } => self.monthly(
                start,
                after_wall,
                months,
                &|y, m| {
                    let first = Date::new(y, m, 1).ok()?;
                    let last = first.days_in_month();
                    let d = if month_day == 0 || month_day as i8 > last {
                        last
                    } else {
                        month_day as i8
                    };
                    Date::new(y, m, d).ok()
                },
                &first_after,
            ),
        }
    }

    /// Occurrences in every `every`-th month from the start month, on the day `pick` chooses.
    fn monthly(
        &self,
        start: DateTime,
        after_wall: i64,
        every: u32,
        pick: &dyn Fn(i16, i8) -> Option<Date>,
        first_after: &dyn Fn(&mut dyn Iterator<Item = DateTime>) -> Option<Timestamp>,
    ) -> Option<Timestamp> {
        let every = i64::from(every);
        let month_index = |y: i64, m: i64| y * 12 + (m - 1);
        let m0 = month_index(i64::from(start.year()), i64::from(start.month()));
        let (ay, am, _) = civil_from_days(after_wall.div_euclid(1440));
        let k0 = ((month_index(ay, am) - m0).div_euclid(every) - 1).max(0);
        let time = start.time();
        let mut candidates = (k0..).filter_map(|k| {
            let mi = m0 + k * every;
            let date = pick(i16::try_from(mi.div_euclid(12)).ok()?, (mi.rem_euclid(12) + 1) as i8)?;
            Some(date.to_datetime(time))
        });
        first_after(&mut candidates)
    }
}

/// The first occurrence of any of `tokens` strictly after `after`.
pub fn next_after(tokens: &[ScheduleToken], after: Timestamp, local: &TimeZone) -> Option<Timestamp> {
    tokens.iter().filter_map(|t| t.next_after(after, local)).min()
}

/// `SMS_ScheduleMethods.ReadFromString`: a string of concatenated tokens.
pub fn read_from_string(s: &str) -> Result<Vec<ScheduleToken>, ScheduleError> {
    if s.is_empty() || !s.len().is_multiple_of(16) || !s.is_ascii() {
        return Err(ScheduleError::Length(s.chars().count()));
    }
    (0..s.len() / 16)
        .map(|i| ScheduleToken::decode(&s[i * 16..i * 16 + 16], i + 1))
        .collect()
}

/// `SMS_ScheduleMethods.WriteToString`: validates every token and concatenates them.
pub fn write_to_string(tokens: &[ScheduleToken]) -> Result<String, ScheduleError> {
    let mut out = String::with_capacity(tokens.len() * 16);
    for (i, t) in tokens.iter().enumerate() {
        t.validate(i + 1)?;
        out.push_str(&t.encode());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
