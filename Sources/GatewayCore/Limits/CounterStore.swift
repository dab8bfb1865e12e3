import Foundation
import Synchronization

/// One amount to take from one counter.
public struct CounterCharge: Sendable, Equatable {
    public enum Rule: Sendable, Equatable {
        /// GCRA: the counter is the theoretical arrival time (unix seconds); each unit adds
        /// `interval`; the charge fits while the TAT stays within `burst × interval` of now.
        case rate(interval: Double, burst: Int)
        /// A plain count that must stay at or below `limit` (monthly quotas).
        case quota(limit: Int)
    }

    public var key: String
    public var rule: Rule
    public var cost: Int

    public init(key: String, rule: Rule, cost: Int) { self.key = key; self.rule = rule; self.cost = cost }
}

/// What a store answers for one charge: whether it fits, and the counter's value after it
/// (the TAT, or the count) as it is or would have been, at the store's own clock.
public struct CounterVerdict: Sendable, Equatable {
    public var allowed: Bool
    public var value: Double
    /// The store's clock (unix seconds) when it decided; one clock for every instance.
    public var now: Double

    public init(allowed: Bool, value: Double, now: Double) { self.allowed = allowed; self.value = value; self.now = now }
}

/// Where limit counters live: in this process, or in PostgreSQL shared by every instance.
public protocol CounterStore: Sendable {
    /// True when the counters are across a network and a decision needs a deadline.
    var isRemote: Bool { get }
    /// Takes every charge or none, atomically: one verdict per charge, in order.
    func charge(_ charges: [CounterCharge]) async throws -> [CounterVerdict]
    /// Gives back quota charges whose operation failed (rates are not given back).
    func refund(_ charges: [CounterCharge]) async throws
    /// Sets a quota counter that does not exist yet (e.g. from the ledger at start).
    func seed(key: String, used: Int) async throws
    /// Takes one permit under each cap for `holder`, all or none. Returns the index of the first
    /// cap that is full, or nil when every permit was taken. A permit expires after `lease`
    /// seconds, so an instance that dies holding one blocks nobody for longer than that.
    func acquire(_ caps: [PermitCap], holder: String, lease: Double) async throws -> Int?
    /// Gives back the permits `holder` took under these keys.
    func release(_ keys: [String], holder: String) async throws
}

/// One concurrency cap an operation needs a permit under.
public struct PermitCap: Sendable, Equatable {
    public var key: String
    public var cap: Int

    public init(key: String, cap: Int) { self.key = key; self.cap = cap }
}

/// Counters in this process: exact for one gateway instance, lost on restart (quotas are
/// seeded again from the ledger at start).
public final class InMemoryCounterStore: CounterStore {
    private let counters = Mutex<[String: Double]>([:])
    private let inFlight = Mutex<[String: Int]>([:])
    private let clock: @Sendable () -> Double

    public init(clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) { self.clock = clock }

    public var isRemote: Bool { false }

    public func charge(_ charges: [CounterCharge]) async throws -> [CounterVerdict] {
        chargeNow(charges)
    }

    /// The same as `charge`, without a suspension point.
    public func chargeNow(_ charges: [CounterCharge]) -> [CounterVerdict] {
        let now = clock()
        return counters.withLock { c in
            var verdicts = [CounterVerdict]()
            verdicts.reserveCapacity(charges.count)
            var all = true
            for ch in charges {
                let v = Self.apply(ch, current: c[ch.key] ?? 0, now: now)
                all = all && v.allowed
                verdicts.append(v)
            }
            if all { for (ch, v) in zip(charges, verdicts) { c[ch.key] = v.value } }
            return verdicts
        }
    }

    static func apply(_ ch: CounterCharge, current: Double, now: Double) -> CounterVerdict {
        switch ch.rule {
        case let .rate(interval, burst):
            let tat = max(current, now) + Double(ch.cost) * interval
            return CounterVerdict(allowed: tat - now <= Double(burst) * interval + 1e-9, value: tat, now: now)
        case .quota(let limit):
            let used = current + Double(ch.cost)
            return CounterVerdict(allowed: used <= Double(limit), value: used, now: now)
        }
    }

    public func refund(_ charges: [CounterCharge]) async throws { refundNow(charges) }

    public func refundNow(_ charges: [CounterCharge]) {
        counters.withLock { c in
            for ch in charges {
                if case .quota = ch.rule { c[ch.key] = max(0, (c[ch.key] ?? 0) - Double(ch.cost)) }
            }
        }
    }

    public func seed(key: String, used: Int) async throws {
        counters.withLock { c in if c[key] == nil { c[key] = Double(used) } }
    }

    public func acquire(_ caps: [PermitCap], holder: String, lease: Double) async throws -> Int? { acquireNow(caps) }

    /// Permits in this process need no holder or lease: they cannot outlive it.
    public func acquireNow(_ caps: [PermitCap]) -> Int? {
        inFlight.withLock { m in
            for (i, c) in caps.enumerated() where (m[c.key] ?? 0) >= c.cap { return i }
            for c in caps { m[c.key, default: 0] += 1 }
            return nil
        }
    }

    public func release(_ keys: [String], holder: String) async throws { releaseNow(keys) }

    public func releaseNow(_ keys: [String]) {
        inFlight.withLock { m in for k in keys { m[k] = max(0, (m[k] ?? 1) - 1) } }
    }
}
