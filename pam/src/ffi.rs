//! The thin FFI to Linux-PAM: the handle PAM passes in, its items (user, service, remote host),
//! the conversation and syslog. The only module of this crate with `unsafe`, each block with
//! why it is sound. Must never keep a pointer PAM owns beyond the call that got it, nor leave a
//! typed code in memory it frees (the response buffer is wiped before it goes back to `free`).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;

use zeroize::Zeroizing;

pub const PAM_SUCCESS: c_int = 0;
pub const PAM_SERVICE_ERR: c_int = 3;
pub const PAM_BUF_ERR: c_int = 5;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_IGNORE: c_int = 25;

pub const PAM_SILENT: c_int = 0x8000;

const PAM_SERVICE: c_int = 1;
const PAM_RHOST: c_int = 4;
const PAM_CONV: c_int = 5;

pub const PAM_PROMPT_ECHO_ON: c_int = 2;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;

/// `pam_handle_t`: opaque, only ever behind a pointer PAM gave us.
#[repr(C)]
pub struct PamHandleT {
    _private: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_user(
        pamh: *mut PamHandleT,
        user: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    fn pam_get_item(pamh: *const PamHandleT, item_type: c_int, item: *mut *const c_void) -> c_int;
}

/// The handle of one PAM call, valid for that call only.
pub struct Handle {
    raw: *mut PamHandleT,
}

impl Handle {
    /// `None` for a null handle (PAM never passes one; refusing it costs nothing).
    pub fn new(raw: *mut PamHandleT) -> Option<Self> {
        (!raw.is_null()).then_some(Self { raw })
    }

    /// The user being authenticated (PAM asks for it through the conversation if unset).
    pub fn user(&self) -> Result<String, c_int> {
        let mut user: *const c_char = ptr::null();
        // SAFETY: `raw` is the live handle of this call; PAM writes a pointer to a string it
        // owns into `user`, or leaves it null; a null prompt asks for PAM's default.
        let rc = unsafe { pam_get_user(self.raw, &mut user, ptr::null()) };
        if rc != PAM_SUCCESS {
            return Err(rc);
        }
        // SAFETY: on success `user` is null or a NUL-terminated string valid until the next
        // PAM call on this handle; it is copied at once.
        unsafe { copy_c_str(user) }.ok_or(PAM_AUTH_ERR)
    }

    pub fn service(&self) -> Option<String> {
        self.item_string(PAM_SERVICE)
    }

    pub fn rhost(&self) -> Option<String> {
        self.item_string(PAM_RHOST)
    }

    fn item_string(&self, item: c_int) -> Option<String> {
        let mut value: *const c_void = ptr::null();
        // SAFETY: `raw` is the live handle; PAM_SERVICE and PAM_RHOST are string items, so PAM
        // writes a pointer to a NUL-terminated string it owns (or null).
        let rc = unsafe { pam_get_item(self.raw, item, &mut value) };
        if rc != PAM_SUCCESS {
            return None;
        }
        // SAFETY: as above; copied before any other PAM call.
        unsafe { copy_c_str(value.cast()) }
    }

    /// Sends one message through the application's conversation and returns its answer (a
    /// prompt's) in a buffer wiped when dropped.
    pub fn converse(&self, style: c_int, text: &str) -> Result<Option<Zeroizing<String>>, c_int> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: `raw` is the live handle; PAM_CONV is a `struct pam_conv` item.
        let rc = unsafe { pam_get_item(self.raw, PAM_CONV, &mut item) };
        if rc != PAM_SUCCESS || item.is_null() {
            return Err(PAM_CONV_ERR);
        }
        // SAFETY: a non-null PAM_CONV item points to the application's `struct pam_conv`,
        // which lives as long as the PAM transaction.
        let conv = unsafe { &*item.cast::<PamConv>() };
        let Some(conv_fn) = conv.conv else {
            return Err(PAM_CONV_ERR);
        };
        let text = CString::new(text).map_err(|_| PAM_BUF_ERR)?;
        let message = PamMessage {
            msg_style: style,
            msg: text.as_ptr(),
        };
        let mut messages: [*const PamMessage; 1] = [&message];
        let mut response: *mut PamResponse = ptr::null_mut();
        // SAFETY: one message, as Linux-PAM expects it (an array of pointers), both alive for
        // the call; the application allocates the response array with malloc or leaves it null.
        let rc = unsafe { conv_fn(1, messages.as_mut_ptr(), &mut response, conv.appdata_ptr) };
        if rc != PAM_SUCCESS {
            // SAFETY: whatever the application allocated is ours to free, wiped first.
            unsafe { free_response(response) };
            return Err(PAM_CONV_ERR);
        }
        // SAFETY: on success `response` is null or one malloc'd `struct pam_response`.
        Ok(unsafe { take_response(response) })
    }
}

/// Copies a C string PAM owns; `None` for null or non-UTF-8.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string valid for this call.
unsafe fn copy_c_str(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's guarantee.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().ok().map(str::to_string)
}

/// Takes the answer out of a response array of one and frees it (wiping the answer).
///
/// # Safety
/// `response` must be null or a malloc'd array of one `PamResponse` whose `resp` is null or a
/// malloc'd NUL-terminated string.
unsafe fn take_response(response: *mut PamResponse) -> Option<Zeroizing<String>> {
    if response.is_null() {
        return None;
    }
    // SAFETY: the caller's guarantee: a valid response.
    let resp = unsafe { (*response).resp };
    let answer = if resp.is_null() {
        None
    } else {
        // SAFETY: a NUL-terminated string (the caller's guarantee).
        let bytes = unsafe { CStr::from_ptr(resp) }.to_bytes();
        Some(Zeroizing::new(String::from_utf8_lossy(bytes).into_owned()))
    };
    // SAFETY: as above; freed exactly once, here.
    unsafe { free_response(response) };
    answer
}

/// Wipes and frees a response array of one.
///
/// # Safety
/// As for [`take_response`].
unsafe fn free_response(response: *mut PamResponse) {
    if response.is_null() {
        return;
    }
    // SAFETY: the caller's guarantee: a valid response.
    let resp = unsafe { (*response).resp };
    if !resp.is_null() {
        // SAFETY: `resp` is a NUL-terminated malloc'd string: wipe its bytes (volatile, so the
        // wipe is not optimised away before free), then give it back.
        unsafe {
            let len = libc::strlen(resp);
            for i in 0..len {
                ptr::write_volatile(resp.add(i), 0);
            }
            libc::free(resp.cast());
        }
    }
    // SAFETY: the array itself was malloc'd by the application.
    unsafe { libc::free(response.cast()) };
}

/// The module's arguments from the PAM configuration line.
///
/// # Safety
/// `argv` must be null or point to `argc` NUL-terminated strings, as PAM passes them.
pub unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Vec<String> {
    if argv.is_null() || argc <= 0 {
        return Vec::new();
    }
    (0..argc as usize)
        // SAFETY: `i < argc`, each element a string (the caller's guarantee).
        .filter_map(|i| unsafe { copy_c_str(*argv.add(i)) })
        .collect()
}

/// One line to syslog under the authpriv facility, with the host process's ident (so sshd's
/// lines and ours read `sshd[pid]: sparekey(sshd): …`). `openlog` is left alone: it would
/// change the host's own ident.
pub fn syslog(priority: c_int, line: &str) {
    let Ok(line) = CString::new(line) else {
        return;
    };
    // SAFETY: a constant "%s" format with one C string argument that lives for the call.
    unsafe { libc::syslog(libc::LOG_AUTHPRIV | priority, c"%s".as_ptr(), line.as_ptr()) };
}

/// While alive, SIGCHLD has its default action, so the child we start can be waited for even in
/// a host that ignores SIGCHLD (its children would then be reaped by the kernel, and our wait
/// would fail); the host's own action comes back when dropped. pam_unix does the same around
/// unix_chkpwd.
pub struct DefaultSigchld {
    previous: libc::sigaction,
}

impl DefaultSigchld {
    pub fn new() -> Option<Self> {
        // SAFETY: zeroed `sigaction` structs are valid (no handler, empty mask); sigaction only
        // reads `new` and writes `previous`, both alive for the call.
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut new.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            (libc::sigaction(libc::SIGCHLD, &new, &mut previous) == 0).then_some(Self { previous })
        }
    }
}

impl Drop for DefaultSigchld {
    fn drop(&mut self) {
        // SAFETY: restores exactly what sigaction reported before; `previous` is a valid struct.
        unsafe {
            libc::sigaction(libc::SIGCHLD, &self.previous, ptr::null_mut());
        }
    }
}
