//! `--auth on|off|auto`: whether a request without a known key is refused.

use std::str::FromStr;

/// The auth mode of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every request needs a known key (or client certificate).
    On,
    /// Nobody is refused for lack of a key; a known key still names its
    /// caller, whose rules then apply.
    Off,
    /// On as soon as any caller exists (at start or added later), else off.
    #[default]
    Auto,
}

impl AuthMode {
    /// Is a request without a known identity refused, with `callers` callers
    /// configured?
    pub fn enforced(self, callers: usize) -> bool {
        match self {
            AuthMode::On => true,
            AuthMode::Off => false,
            AuthMode::Auto => callers > 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::On => "on",
            AuthMode::Off => "off",
            AuthMode::Auto => "auto",
        }
    }
}

impl FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "on" => Ok(AuthMode::On),
            "off" => Ok(AuthMode::Off),
            "auto" => Ok(AuthMode::Auto),
            other => Err(format!("auth must be on, off or auto, not {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_turns_on_with_the_first_caller() {
        assert!(!AuthMode::Auto.enforced(0));
        assert!(AuthMode::Auto.enforced(1));
        assert!(AuthMode::On.enforced(0));
        assert!(!AuthMode::Off.enforced(5));
        assert_eq!("ON".parse(), Ok(AuthMode::On));
        assert!("maybe".parse::<AuthMode>().is_err());
    }
}
