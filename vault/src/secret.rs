//! Memory for secrets: one page, locked against swap, excluded from core
//! dumps, zeroized on drop.

use zeroize::Zeroize;

const PAGE: usize = 4096;

#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// Up to one page of secret bytes (the seed, an ephemeral key).
pub struct SecretBytes {
    page: Box<Page>,
    len: usize,
    locked: bool,
}

impl SecretBytes {
    /// Copies `bytes` (at most one page) into protected memory. The caller
    /// zeroizes its own copy.
    pub fn new(bytes: &[u8]) -> Self {
        let mut page = Box::new(Page([0u8; PAGE]));
        let len = bytes.len().min(PAGE);
        page.0[..len].copy_from_slice(&bytes[..len]);
        let locked = protect(&mut page);
        SecretBytes { page, len, locked }
    }

    /// The secret.
    pub fn expose(&self) -> &[u8] {
        &self.page.0[..self.len]
    }

    /// Whether the page is locked against swap (mlock may be refused by
    /// RLIMIT_MEMLOCK; the node says so at unlock).
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.page.0.zeroize();
        if self.locked {
            unprotect(&mut self.page);
        }
    }
}

#[allow(unsafe_code)]
fn protect(page: &mut Page) -> bool {
    let ptr = page.0.as_mut_ptr().cast::<libc::c_void>();
    // SAFETY: `ptr` is the start of a live, page-aligned allocation of
    // exactly PAGE bytes owned by the caller; mlock and madvise only change
    // paging attributes of that range.
    unsafe {
        libc::madvise(ptr, PAGE, libc::MADV_DONTDUMP);
        libc::mlock(ptr, PAGE) == 0
    }
}

#[allow(unsafe_code)]
fn unprotect(page: &mut Page) {
    let ptr = page.0.as_mut_ptr().cast::<libc::c_void>();
    // SAFETY: as in `protect`; the range was locked there.
    unsafe {
        libc::munlock(ptr, PAGE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_bytes() {
        let secret = SecretBytes::new(&[1, 2, 3]);
        assert_eq!(secret.expose(), &[1, 2, 3]);
        assert_eq!(std::mem::align_of::<Page>(), PAGE);
    }
}
