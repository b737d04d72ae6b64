//! Periods: inclusive ranges of tenant-local dates, resolved from time expressions as
//! `shared/product/metrics.md` defines them, and the "previous period" of each kind.

use chrono::{Datelike, Duration, NaiveDate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Day,
    Week,
    Month,
    Quarter,
    Year,
    /// N days ending on `end`.
    Days,
    /// N whole weeks / months, or any explicit range.
    Custom,
    /// From the first day with data.
    AllTime,
    /// N whole calendar months ("last 3 months", "last 2 quarters"): the previous period is the N months
    /// before.
    Months(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub kind: Kind,
    /// The named period was cut short at today ("this month" is the 1st..today).
    pub clipped: bool,
}

pub fn month_start(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), d.month(), 1).expect("valid")
}

pub fn add_months(d: NaiveDate, n: i32) -> NaiveDate {
    let m0 = d.year() * 12 + d.month0() as i32 + n;
    let (y, m) = (m0.div_euclid(12), m0.rem_euclid(12) as u32 + 1);
    let last = days_in_month(y, m);
    NaiveDate::from_ymd_opt(y, m, d.day().min(last)).expect("valid")
}

pub fn days_in_month(y: i32, m: u32) -> u32 {
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    (next.expect("valid") - NaiveDate::from_ymd_opt(y, m, 1).expect("valid")).num_days() as u32
}

pub fn month_end(d: NaiveDate) -> NaiveDate {
    add_months(month_start(d), 1) - Duration::days(1)
}

pub fn quarter_start(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1).expect("valid")
}

pub fn week_start(d: NaiveDate) -> NaiveDate {
    d - Duration::days(d.weekday().num_days_from_monday() as i64)
}

impl Period {
    pub fn new(start: NaiveDate, end: NaiveDate, kind: Kind) -> Self {
        Self {
            start,
            end,
            kind,
            clipped: false,
        }
    }

    /// Cuts the period at `today`, remembering that it was cut.
    pub fn clip(mut self, today: NaiveDate) -> Self {
        // A period wholly in the future stays as named; the answer says it hasn't happened yet.
        if self.end > today && self.start <= today {
            self.end = today;
            self.clipped = true;
        }
        self
    }

    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }

    pub fn day(d: NaiveDate) -> Self {
        Self::new(d, d, Kind::Day)
    }
    pub fn week_of(d: NaiveDate) -> Self {
        let s = week_start(d);
        Self::new(s, s + Duration::days(6), Kind::Week)
    }
    pub fn month_of(d: NaiveDate) -> Self {
        Self::new(month_start(d), month_end(d), Kind::Month)
    }
    pub fn quarter_of(d: NaiveDate) -> Self {
        let s = quarter_start(d);
        Self::new(s, add_months(s, 3) - Duration::days(1), Kind::Quarter)
    }
    pub fn year(y: i32) -> Self {
        Self::new(
            NaiveDate::from_ymd_opt(y, 1, 1).expect("valid"),
            NaiveDate::from_ymd_opt(y, 12, 31).expect("valid"),
            Kind::Year,
        )
    }

    /// The period just before this one, of the same kind and length (metrics.md, Comparisons).
    pub fn previous(&self) -> Period {
        let shift_months = |n: i32| {
            let start = add_months(self.start, -n);
            let end = if self.clipped {
                (start + Duration::days(self.days() - 1))
                    .min(add_months(start, n) - Duration::days(1))
            } else {
                add_months(self.start, 0) - Duration::days(1)
            };
            Period {
                start,
                end,
                kind: self.kind,
                clipped: self.clipped,
            }
        };
        match self.kind {
            Kind::Month => shift_months(1),
            Kind::Months(n) => Period {
                start: add_months(self.start, -n),
                end: self.start - Duration::days(1),
                kind: self.kind,
                clipped: false,
            },
            Kind::Quarter => shift_months(3),
            // This year (clipped): Jan 1..the same date last year, not the same number of days.
            Kind::Year if self.clipped => Period {
                start: add_months(self.start, -12),
                end: add_months(self.end, -12),
                kind: self.kind,
                clipped: true,
            },
            Kind::Year => shift_months(12),
            // This week (clipped or not): the previous Monday..the same weekday.
            Kind::Week => Period {
                start: self.start - Duration::days(7),
                end: self.end - Duration::days(7),
                kind: self.kind,
                clipped: self.clipped,
            },
            Kind::Day | Kind::Days | Kind::Custom | Kind::AllTime => {
                let n = self.days();
                Period {
                    start: self.start - Duration::days(n),
                    end: self.start - Duration::days(1),
                    kind: self.kind,
                    clipped: self.clipped,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn previous_periods() {
        let m = Period::month_of(d("2025-05-10"));
        assert_eq!(
            (m.previous().start, m.previous().end),
            (d("2025-04-01"), d("2025-04-30"))
        );
        let this_month = Period::month_of(d("2025-03-31")).clip(d("2025-03-31"));
        let p = this_month.previous();
        assert_eq!((p.start, p.end), (d("2025-02-01"), d("2025-02-28")));
        let mtd = Period::month_of(d("2025-06-15")).clip(d("2025-06-15"));
        assert_eq!(
            (mtd.previous().start, mtd.previous().end),
            (d("2025-05-01"), d("2025-05-15"))
        );
        let y = Period::year(2024);
        assert_eq!(
            (y.previous().start, y.previous().end),
            (d("2023-01-01"), d("2023-12-31"))
        );
        let wtd = Period::week_of(d("2025-06-11")).clip(d("2025-06-11"));
        assert_eq!(
            (wtd.previous().start, wtd.previous().end),
            (d("2025-06-02"), d("2025-06-04"))
        );
        let days = Period::new(d("2025-05-17"), d("2025-06-15"), Kind::Days);
        assert_eq!(
            (days.previous().start, days.previous().end),
            (d("2025-04-17"), d("2025-05-16"))
        );
    }
}
