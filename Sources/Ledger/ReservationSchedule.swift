import Synchronization

/// When a signing's reservation must be on disk. Written at once, every reservation costs a
/// flush of its own; held back until shortly before its signing usually ends, the reservations
/// of concurrent signings share one. How long signings take is learnt per upstream from the
/// signings themselves. One that ends sooner than usual hurries its reservation and waits one
/// flush, as it would without a reservation; one running alone is never held back.
final class ReservationSchedule: Sendable {
    /// The longest a reservation is held back, however slow its upstream.
    let maxHold: Duration
    /// A moving average of how long signings took, in nanoseconds, per upstream.
    private let typical = Mutex<[String: Int]>([:])

    init(maxHold: Duration) { self.maxHold = maxHold }

    /// Nil: write it with the next flush.
    func due(upstream: String?, concurrent: Bool, flush: Duration) -> ContinuousClock.Instant? {
        guard concurrent, let upstream, let nanos = typical.withLock({ $0[upstream] }) else { return nil }
        // Written by three quarters of the usual signing, with room for two flushes.
        let hold = min(maxHold, .nanoseconds(nanos / 4 * 3) - flush * 2)
        return hold > .zero ? .now + hold : nil
    }

    func signed(upstream: String?, took: Duration) {
        guard let upstream else { return }
        let nanos = took.wholeNanoseconds
        typical.withLock { t in
            let average = t[upstream] ?? nanos
            t[upstream] = average + (nanos - average) / 8
        }
    }
}
