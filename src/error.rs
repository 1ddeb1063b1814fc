//! The one error type of cnibox.
//!
//! Every layer returns [`Error`]. It already carries the CNI error code it will be
//! reported with, so mapping to the wire format happens in exactly one place
//! (`cni::skel`), and lower layers choose the code where they know best
//! (a kernel `EAGAIN` is "try again later", a bad field is "invalid config").
//! The errno is kept beside the text so callers can still match on it
//! (`ENOENT` in a DEL is success, `EEXIST` on a random veth name means retry).

use std::fmt;

/// CNI error codes (SPEC.md "Error" table, plus the library-only 8 and 999).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODING: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const INVALID_NETNS: u32 = 8;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    pub const INTERNAL: u32 = 999;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One pointer wide, so that every `Result<T>` is about as small as its `T`:
/// the error path is rare, and a wide error made each `?` copy and test more
/// bytes in every function of every plugin. Its parts are read and changed
/// through `Deref` (`e.code`, `e.msg = ...`).
#[derive(Clone, PartialEq, Eq)]
pub struct Error(Box<Parts>);

/// What an [`Error`] says, reached through it.
#[derive(Clone, PartialEq, Eq)]
pub struct Parts {
    pub code: u32,
    pub msg: String,
    pub details: String,
    /// The kernel's errno when the error came from a system call or netlink.
    pub errno: i32,
}

impl std::ops::Deref for Error {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl std::ops::DerefMut for Error {
    fn deref_mut(&mut self) -> &mut Parts {
        &mut self.0
    }
}

impl Error {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self::from_parts(code, msg.into(), 0)
    }

    #[inline(never)]
    fn from_parts(code: u32, msg: String, errno: i32) -> Self {
        Error(Box::new(Parts { code, msg, details: String::new(), errno }))
    }

    /// A generic failure (code 999, as the reference reports plugin errors).
    pub fn msg(msg: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, msg)
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg)
    }

    /// A failed system call or kernel request: `what` says what was being done to which object.
    pub fn os(what: impl fmt::Display, errno: i32) -> Self {
        let code = match errno {
            libc::EAGAIN | libc::EBUSY | libc::EINTR => code::TRY_AGAIN_LATER,
            _ => code::INTERNAL,
        };
        Self::from_parts(code, format!("{what}: {}", strerror(errno)), errno)
    }

    /// The last OS error (errno) of a libc call.
    pub fn last_os(what: impl fmt::Display) -> Self {
        Self::os(what, std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn with_code(mut self, code: u32) -> Self {
        self.code = code;
        self
    }

    /// Prefix the message with what the caller was doing.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }

    pub fn is_errno(&self, e: i32) -> bool {
        self.errno == e
    }

    /// "The object is already gone": what DEL treats as success.
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno, libc::ENOENT | libc::ENODEV | libc::ESRCH | libc::ENXIO)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

// Debug shows the same text: the tiny build empties derived Debug, and a
// `fn main() -> Result` or `unwrap` must still say something readable.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(n) => Error::os("I/O", n),
            None => Error::new(code::IO, e.to_string()),
        }
    }
}

/// The C library's text for an errno ("No such device"), without the
/// " (os error N)" that std's Display adds: the code is already in `errno`.
pub fn strerror(errno: i32) -> String {
    let mut s = std::io::Error::from_raw_os_error(errno).to_string();
    if let Some(at) = s.find(" (os error ") {
        s.truncate(at);
    }
    s
}

/// The undoing of a failed ADD's earlier steps. Each undo step that fails
/// (other than finding its object already gone) is kept and reported in the
/// details of the error that caused the rollback, so that whatever is left
/// behind is named rather than silently dropped.
#[derive(Default)]
pub struct Rollback {
    failed: Vec<Error>,
}

impl Rollback {
    /// Record the outcome of one undo step.
    pub fn note<T>(&mut self, r: Result<T>) {
        if let Err(e) = r {
            if !e.is_not_found() {
                self.failed.push(e);
            }
        }
    }

    /// `e`, with the failed undo steps added to its details. An undo step
    /// that failed for the very reason the ADD did (IPAM DEL refusing the
    /// same dataDir) says nothing new and is left out.
    pub fn into_error(self, mut e: Error) -> Error {
        let texts: Vec<String> = self.failed.iter().filter(|f| f.msg != e.msg).map(|f| f.to_string()).collect();
        if texts.is_empty() {
            return e;
        }
        let sep = if e.details.is_empty() { "" } else { "; " };
        e.details = format!("{}{sep}rollback failed: {}", e.details, texts.join("; "));
        e
    }

    /// `r`, its error (if any) carrying the failed undo steps.
    pub fn finish<T>(self, r: Result<T>) -> Result<T> {
        r.map_err(|e| self.into_error(e))
    }
}

/// Attach context to any fallible result in one call.
pub trait Context<T> {
    fn context(self, ctx: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn context(self, ctx: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_keep_errno_and_map_transient_to_11() {
        let e = Error::os("create bridge cni0", libc::EBUSY);
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert!(e.msg.starts_with("create bridge cni0: "));
        let e = Error::os("delete link eth0", libc::ENODEV);
        assert!(e.is_not_found());
        assert_eq!(e.code, code::INTERNAL);
    }

    #[test]
    fn strerror_is_the_c_library_text_alone() {
        assert_eq!(strerror(libc::ENODEV), "No such device");
        assert_eq!(strerror(libc::EEXIST), "File exists");
    }

    #[test]
    fn rollback_keeps_its_failures_in_the_details() {
        let mut rb = Rollback::default();
        rb.note(Err::<(), _>(Error::os("delete link veth1", libc::EBUSY)));
        rb.note(Err::<(), _>(Error::os("delete link veth2", libc::ENODEV)));
        rb.note(Ok(()));
        rb.note(Err::<(), _>(Error::msg("add route")));
        let e = rb.into_error(Error::msg("add route").with_details("kernel said no"));
        assert_eq!(e.msg, "add route");
        assert_eq!(e.details, format!("kernel said no; rollback failed: delete link veth1: {}", strerror(libc::EBUSY)));
        let e = Rollback::default().into_error(Error::msg("x"));
        assert_eq!(e.details, "");
    }

    #[test]
    fn context_prefixes() {
        let e = Error::msg("boom").context("in netns /run/netns/x");
        assert_eq!(e.msg, "in netns /run/netns/x: boom");
    }
}
