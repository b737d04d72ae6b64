//! Parse, don't validate: identifiers and settings that cannot exist in an invalid state past the edge.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// A new, time-ordered id.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                uuid::Uuid::parse_str(s.trim())
                    .map(|u| Self(u.to_string()))
                    .map_err(|_| Error::invalid(concat!("malformed ", $what, " id: expected a UUID")))
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(/// A tenant: one business and all of its data.
    TenantId, "tenant");
uuid_id!(/// A user of a tenant.
    UserId, "user");
uuid_id!(/// A login session (one refresh-token family).
    SessionId, "session");
uuid_id!(/// A connected source (a Shopify store, a Stripe account).
    ConnectorId, "connector");
uuid_id!(/// One sync run of a connector.
    SyncId, "sync");

/// An e-mail address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim().to_lowercase();
        let bad = || Error::invalid("email must be an address like name@example.com");
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        if local.is_empty() || domain.len() < 3 || !domain.contains('.') || domain.contains('@') {
            return Err(bad());
        }
        if domain.starts_with('.') || domain.ends_with('.') {
            return Err(bad());
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IANA time zone of the tenant, e.g. `America/New_York`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl TimeZone {
    pub fn parse(s: &str) -> Result<Self, Error> {
        s.trim().parse::<chrono_tz::Tz>().map(Self).map_err(|_| {
            Error::invalid(format!(
                "timezone {:?} is not an IANA time zone name; use one like \"America/New_York\"",
                truncate(s, 64)
            ))
        })
    }
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

/// An ISO 4217 currency code, upper-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency(String);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let up = s.trim().to_uppercase();
        // Money a shop is paid in: not funds (BOV) nor special units (XAU gold, XDR, XXX "no currency").
        if iso_currency::Currency::from_code(&up).is_some_and(|c| !c.is_fund() && !c.is_special()) {
            Ok(Self(up))
        } else {
            Err(Error::invalid(format!(
                "currency {:?} is not a supported ISO 4217 code; use one like \"USD\" or \"EUR\"",
                truncate(s, 16)
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The ISO 4217 minor-unit exponent: amounts are kept in minor units (2 for USD, 0 for JPY, 3 for KWD;
    /// 0 for units without a minor unit, such as gold).
    pub fn exponent(&self) -> u32 {
        iso_currency::Currency::from_code(&self.0)
            .and_then(|c| c.exponent())
            .map_or(0, u32::from)
    }
    /// The symbol used in answers ("$" for USD); the code followed by a space otherwise.
    pub fn symbol(&self) -> String {
        match self.0.as_str() {
            "USD" | "CAD" | "AUD" | "NZD" | "MXN" | "SGD" | "HKD" => "$".into(),
            "EUR" => "€".into(),
            "GBP" => "£".into(),
            "JPY" => "¥".into(),
            other => format!("{other} "),
        }
    }
}

/// At most `n` characters of `s`, for echoing user input back in errors.
pub fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_non_uuids() {
        assert!("nope".parse::<TenantId>().is_err());
        let t = TenantId::generate();
        assert_eq!(t.as_str().parse::<TenantId>().unwrap(), t);
    }

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse(" Ava@Example.COM ").unwrap().as_str(),
            "ava@example.com"
        );
        for bad in [
            "",
            "ava",
            "@x.com",
            "ava@",
            "ava@com",
            "a b@x.com",
            "ava@x.com@y.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timezone_and_currency() {
        assert_eq!(
            TimeZone::parse("America/New_York").unwrap().name(),
            "America/New_York"
        );
        assert!(TimeZone::parse("Mars/Base").is_err());
        assert_eq!(Currency::parse("usd").unwrap().as_str(), "USD");
        assert!(Currency::parse("XXX").is_err());
        assert_eq!(Currency::parse("JPY").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("krw").unwrap().exponent(), 0);
        assert_eq!(Currency::parse("KWD").unwrap().exponent(), 3);
        assert_eq!(Currency::parse("EUR").unwrap().exponent(), 2);
        assert!(Currency::parse("XAU").is_err());
    }
}
