//! Buffers of connections that are between requests go back to a small
//! per-thread free list (nginx frees an idle keep-alive connection's large
//! buffer the same way): an idle client costs its task and socket, not
//! 12 KiB of buffers, and a busy one takes them back without a malloc.

use std::{cell::RefCell, future::poll_fn, io, mem::MaybeUninit, pin::Pin, task::Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Buffers kept per worker thread; more are freed.
const KEPT: usize = 256;
/// Larger buffers (a big head, a long body read) are not kept.
const MAX_KEPT_CAPACITY: usize = 64 * 1024;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with at least `capacity`.
pub fn take(capacity: usize) -> Vec<u8> {
    let kept = FREE.with(|f| f.borrow_mut().pop());
    match kept {
        Some(mut b) => {
            b.reserve(capacity);
            b
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Hands `buf`'s allocation back (it is left empty, without capacity).
pub fn give(buf: &mut Vec<u8>) {
    let mut b = std::mem::take(buf);
    if b.capacity() == 0 || b.capacity() > MAX_KEPT_CAPACITY {
        return;
    }
    b.clear();
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEPT {
            f.push(b);
        }
    });
}

/// Reads what `io` has into `buf` without holding a buffer while it waits:
/// the bytes land in a stack buffer that exists only during a poll, and
/// `buf` takes an allocation (at least `capacity`) once some came.
/// `Ok(0)`: end of input.
pub async fn read_into<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    capacity: usize,
) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut stack = [MaybeUninit::<u8>::uninit(); 4096];
        let mut rb = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut *io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let got = rb.filled();
                if !got.is_empty() {
                    if buf.capacity() == 0 {
                        *buf = take(capacity.max(got.len()));
                    }
                    buf.extend_from_slice(got);
                }
                Poll::Ready(Ok(got.len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_large_ones_are_not_kept() {
        let mut a = take(8192);
        let ptr = a.as_ptr();
        a.extend_from_slice(b"hello");
        give(&mut a);
        assert_eq!(a.capacity(), 0);
        let b = take(100);
        assert!(b.is_empty() && b.capacity() >= 8192);
        assert_eq!(b.as_ptr(), ptr, "the same allocation");
        let mut big = Vec::with_capacity(MAX_KEPT_CAPACITY + 1);
        give(&mut big);
        let c = take(10);
        assert!(c.capacity() < MAX_KEPT_CAPACITY);
    }

    #[tokio::test]
    async fn reads_allocate_only_when_bytes_come() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut buf = Vec::new();
        let reader = tokio::spawn(async move {
            let n = read_into(&mut server, &mut buf, 8192).await.unwrap();
            (n, buf)
        });
        tokio::task::yield_now().await;
        use tokio::io::AsyncWriteExt;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (n, buf) = reader.await.unwrap();
        assert_eq!(n, 16);
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
        assert!(buf.capacity() >= 8192);
    }
}
