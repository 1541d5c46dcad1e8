//! `--drop-same-frames`: a frame byte-identical to the previous one is not published as new.
//!
//! A static KVM/HDMI screen or a slide camera then costs almost nothing to serve: viewers are
//! woken only when the picture changes, and the stream's keep-alive re-send (about once a second)
//! keeps connections and proxies alive meanwhile. The first repeat of a run *is* published, so
//! the last distinct frame goes out twice: WebKit shows the last part of a burst only once more
//! data follows it, and this way it paints at once instead of at the next keep-alive.

use bytes::Bytes;

/// What the camera remembers of the frames it published.
#[derive(Debug, Default)]
pub(super) struct SameFrames {
    previous: Option<Bytes>,
    repeats: u64,
}

impl SameFrames {
    /// Whether `jpeg` should be published: false for the second and later repeats of a frame.
    /// Compares lengths first, then bytes (no hashing: one pass, and only on equal lengths).
    pub(super) fn publish(&mut self, jpeg: &Bytes) -> bool {
        if self
            .previous
            .as_ref()
            .is_some_and(|p| p.len() == jpeg.len() && p[..] == jpeg[..])
        {
            self.repeats += 1;
            return self.repeats == 1;
        }
        self.previous = Some(jpeg.clone());
        self.repeats = 0;
        true
    }

    /// Forgets the previous frame (a no-signal frame came between).
    pub(super) fn reset(&mut self) {
        self.previous = None;
        self.repeats = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_published_twice_then_dropped_until_it_changes() {
        let mut s = SameFrames::default();
        let a = Bytes::from_static(b"\xff\xd8aaaa\xff\xd9");
        let a_again = Bytes::copy_from_slice(&a);
        let b = Bytes::from_static(b"\xff\xd8bbbb\xff\xd9");
        let longer = Bytes::from_static(b"\xff\xd8aaaaa\xff\xd9");
        let sent: Vec<bool> = [&a, &a_again, &a, &a, &b, &b, &b, &longer, &a]
            .iter()
            .map(|f| s.publish(f))
            .collect();
        assert_eq!(
            sent,
            [true, true, false, false, true, true, false, true, true]
        );
        s.reset();
        assert!(s.publish(&a));
    }
}
