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
    /// Once on it stays on until the process ends: removing the last caller
    /// must not open the door to everyone.
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

    /// Like [`enforced`](Self::enforced) for a directory that changed:
    /// `was` says whether auth was enforced before the change (auto latches
    /// on).
    pub fn enforced_after(self, callers: usize, was: bool) -> bool {
        self.enforced(callers) || (self == AuthMode::Auto && was)
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

    #[test]
    fn auto_stays_on_when_the_last_caller_goes() {
        assert!(AuthMode::Auto.enforced_after(0, true));
        assert!(!AuthMode::Auto.enforced_after(0, false));
        assert!(!AuthMode::Off.enforced_after(0, true));
        assert!(AuthMode::On.enforced_after(0, false));
    }
}
