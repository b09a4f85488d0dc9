//! A wrapper for secret values.

use std::fmt;
use zeroize::Zeroize;

/// A secret value. `Debug` and `Display` print `[REDACTED]`; the value is
/// zeroized when dropped. Read it only with [`Secret::expose`], at the one
/// place that needs the real value.
///
/// `Secret` deliberately implements neither `Serialize` nor `Clone`: copying
/// a secret or writing it out must be a visible decision at the call site.
pub struct Secret<T: Zeroize>(Box<T>);

impl<T: Zeroize> Secret<T> {
    /// Wrap a value.
    pub fn new(value: T) -> Self {
        Secret(Box::new(value))
    }

    /// Borrow the real value.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Borrow the real value mutably (e.g. to fill a buffer in place).
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize + Clone> Secret<T> {
    /// An explicit copy of the secret.
    pub fn duplicate(&self) -> Self {
        Secret::new((*self.0).clone())
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for Secret<String> {
    fn from(s: String) -> Self {
        Secret::new(s)
    }
}

impl From<Vec<u8>> for Secret<Vec<u8>> {
    fn from(v: Vec<u8>) -> Self {
        Secret::new(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new(String::from("ghp_supersecretvalue"));
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([REDACTED])");
        assert_eq!(s.expose(), "ghp_supersecretvalue");
    }
}
