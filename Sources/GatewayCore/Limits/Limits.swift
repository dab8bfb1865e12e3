import CSC
import Foundation
import Logging
import Synchronization

/// What a tenant wants when the shared counter store cannot answer in time.
public enum CounterStoreFailureMode: String, Sendable {
    /// Let the operation through uncounted (availability first).
    case open
    /// Refuse it with 503 (exact limits and quotas first). The default.
    case closed
}

/// The limits stage: rates (GCRA, counted in signatures or requests) and concurrency caps from
/// `limit` rules, and the tenant plan's monthly quota. Refusals are 429 with `Retry-After`,
/// `RateLimit-Policy` and `RateLimit`, and name the limit that fired.
///
/// Quota is given back when the upstream call fails, so the quota counts exactly what billing
/// counts (signatures of ok events). Rates are not given back: they protect capacity, and a
/// failed call used it too.
public final class Limits: Sendable {
    public struct Statistics: Sendable, Equatable {
        public var storeFailures = 0
        public var failedOpen = 0
        public var failedClosed = 0
        public var refusals = 0
    }

    public let store: any CounterStore
    /// Seconds a remote store has to answer one decision.
    let timeout: Double
    /// Seconds a concurrency permit in a shared store lives at most (see `CounterStore.acquire`).
    let permitLease: Double
    public let alerts: QuotaAlerts
    private let stats = Mutex(Statistics())
    /// After a store failure, decisions skip the store until then (no pile-up of waiting calls).
    private let storeDownUntil = Mutex<Double>(0)
    private let months = Mutex<MonthWindow?>(nil)

    public init(store: any CounterStore = InMemoryCounterStore(), timeout: Double = 0.25, permitLease: Double = 120,
                alerts: QuotaAlerts = QuotaAlerts()) {
        self.store = store
        self.timeout = timeout
        self.permitLease = permitLease
        self.alerts = alerts
    }

    public var statistics: Statistics { stats.withLock { $0 } }

    /// What the operation takes, to give back or release when it ends.
    public final class Admission: Sendable {
        let limits: Limits?
        let quotaCharges: [CounterCharge]
        let permits: [String]
        /// Who holds the permits in a shared store: one id per admission.
        let holder: String
        private let finished = Mutex(false)

        init(limits: Limits?, quotaCharges: [CounterCharge], permits: [String], holder: String) {
            self.limits = limits; self.quotaCharges = quotaCharges; self.permits = permits; self.holder = holder
        }

        public static let none = Admission(limits: nil, quotaCharges: [], permits: [], holder: "")

        /// The operation is over: concurrency permits go back; quota stays taken.
        public func finish() {
            guard !finished.withLock({ let was = $0; $0 = true; return was }) else { return }
            limits?.release(permits, holder: holder)
        }

        /// The operation failed before signing anything: quota goes back too.
        public func cancel(_ context: OperationContext) {
            finish()
            guard let limits, !quotaCharges.isEmpty else { return }
            let charges = quotaCharges
            if let memory = limits.store as? InMemoryCounterStore {
                memory.refundNow(charges)
                return
            }
            Task { await limits.refund(charges, context) }
        }
    }

    /// Checks and takes every applicable limit at once; throws the refusal of the first that fired.
    public func admit(_ specs: [LimitSpec], facts: OperationFacts, signatures: Int, plan: TenantPlan?,
                      failMode: CounterStoreFailureMode, _ context: OperationContext) async throws(CSCError) -> Admission {
        var charges = [CounterCharge]()
        var chargedSpecs = [LimitSpec?]()
        var caps = [PermitCap](), capSpecs = [LimitSpec]()
        for spec in specs {
            let key = Self.key(spec, facts)
            switch spec.kind {
            case let .rate(rate, period, burst, unit):
                let cost = unit == .requests ? 1 : signatures
                guard cost > 0 else { continue }
                if cost > burst { throw refusal(spec, retryAfter: nil, message: "this request needs \(cost) \(unit.rawValue) but the limit allows at most \(burst) at once") }
                charges.append(CounterCharge(key: key, rule: .rate(interval: period / Double(rate), burst: burst), cost: cost))
                chargedSpecs.append(spec)
            case .concurrency(let cap):
                caps.append(PermitCap(key: key, cap: cap))
                capSpecs.append(spec)
            }
        }
        var quotaWindow: MonthWindow?
        if let quota = plan?.monthlyQuota, signatures > 0 {
            let window = month(at: facts.time)
            quotaWindow = window
            charges.append(CounterCharge(key: Self.quotaKey(tenant: facts.tenant, month: window.key), rule: .quota(limit: quota),
                                         cost: signatures))
            chargedSpecs.append(nil)
        }
        if charges.isEmpty && caps.isEmpty { return .none }

        // Concurrency first: a full cap refuses before any rate or quota is taken.
        let holder = caps.isEmpty || store is InMemoryCounterStore ? "" : UUID().uuidString
        var taken = [String]()
        if !caps.isEmpty {
            let full: Int?
            do {
                full = try await acquire(caps, holder: holder)
            } catch {
                if let refusal = storeFailure(error, tenant: facts.tenant, failMode: failMode, context) { throw refusal }
                return Admission(limits: self, quotaCharges: [], permits: [], holder: holder)
            }
            if let full { throw refusal(capSpecs[full], retryAfter: 1, message: "\(caps[full].cap) operations are already in flight") }
            taken = caps.map(\.key)
        }
        if charges.isEmpty { return Admission(limits: self, quotaCharges: [], permits: taken, holder: holder) }

        let verdicts: [CounterVerdict]
        do {
            verdicts = try await charge(charges)
        } catch {
            guard let refusal = storeFailure(error, tenant: facts.tenant, failMode: failMode, context) else {
                return Admission(limits: self, quotaCharges: [], permits: taken, holder: holder)
            }
            release(taken, holder: holder)
            throw refusal
        }
        guard verdicts.allSatisfy(\.allowed) else {
            release(taken, holder: holder)
            for (i, v) in verdicts.enumerated() where !v.allowed {
                if let spec = chargedSpecs[i], case let .rate(_, _, burst, _) = spec.kind,
                   case let .rate(interval, _) = charges[i].rule {
                    let wait = v.value - v.now - Double(burst) * interval
                    throw refusal(spec, retryAfter: wait, message: nil)
                }
                if let plan, let quota = plan.monthlyQuota, let window = quotaWindow {
                    alerts.raise(tenant: facts.tenant, month: window.key, percent: 100, used: Int(v.value) - signatures,
                                 quota: quota, refused: true, context)
                    throw quotaRefusal(tenant: facts.tenant, quota: quota, used: Int(v.value) - signatures, window: window,
                                       now: facts.time)
                }
            }
            throw CSCError(status: 429, error: "limit_exceeded", description: "A limit fired")
        }
        var quotaCharges = [CounterCharge]()
        for (i, ch) in charges.enumerated() where chargedSpecs[i] == nil {
            quotaCharges.append(ch)
            if let plan, let quota = plan.monthlyQuota, let window = quotaWindow {
                alerts.check(tenant: facts.tenant, month: window.key, before: Int(verdicts[i].value) - ch.cost,
                             after: Int(verdicts[i].value), quota: quota, thresholds: plan.quotaThresholds, context)
            }
        }
        return Admission(limits: self, quotaCharges: quotaCharges, permits: taken, holder: holder)
    }

    public static func quotaKey(tenant: String, month: String) -> String { "q|\(tenant)|\(month)" }

    /// The counter a limit uses for this operation: the rule's name and the scope's value.
    static func key(_ spec: LimitSpec, _ f: OperationFacts) -> String {
        switch spec.scope {
        case .tenant: "r|\(spec.name)|\(f.tenant)"
        case .client: "r|\(spec.name)|\(f.tenant)/\(f.client)"
        case .credential: "r|\(spec.name)|\(f.tenant)/\(f.credential ?? "-")"
        case .upstream: "r|\(spec.name)|\(f.upstream ?? "-")"
        }
    }

    private func charge(_ charges: [CounterCharge]) async throws -> [CounterVerdict] {
        if let memory = store as? InMemoryCounterStore { return memory.chargeNow(charges) }
        try checkStoreUp()
        do {
            let store = self.store
            return try await Deadline.run(seconds: timeout) { try await store.charge(charges) }
        } catch {
            markStoreDown()
            throw error
        }
    }

    private func checkStoreUp() throws {
        if storeDownUntil.withLock({ $0 }) > Date().timeIntervalSince1970 {
            throw CounterStoreUnavailable(reason: "marked down after a recent failure")
        }
    }

    private func markStoreDown() { storeDownUntil.withLock { $0 = Date().timeIntervalSince1970 + 1 } }

    func refund(_ charges: [CounterCharge], _ context: OperationContext) async {
        do {
            let store = self.store
            try await Deadline.run(seconds: max(timeout, 1)) { try await store.refund(charges) }
        } catch {
            context.logger.warning("quota could not be given back", metadata: ["error": .string(String(describing: error))])
        }
    }

    /// Counts and logs a store that did not answer; the tenant's mode decides: nil lets the
    /// operation through uncounted, otherwise the 503 to throw.
    private func storeFailure(_ error: any Error, tenant: String, failMode: CounterStoreFailureMode,
                              _ context: OperationContext) -> CSCError? {
        let note = stats.withLock { s -> String in
            s.storeFailures += 1
            if failMode == .open { s.failedOpen += 1 } else { s.failedClosed += 1 }
            return "\(s.storeFailures)"
        }
        context.logger.warning("limit counters unreachable", metadata: [
            "tenant": .string(tenant), "fail_mode": .string(failMode.rawValue), "store_failures": .string(note),
            "error": .string(String(describing: error).prefix(200).description),
        ])
        if failMode == .open { return nil }
        return CSCError(status: 503, error: "temporarily_unavailable",
                        description: "The limit counters cannot be reached, and this tenant's limits fail closed; retry later",
                        headers: ["Retry-After": "1"])
    }

    private func acquire(_ caps: [PermitCap], holder: String) async throws -> Int? {
        if let memory = store as? InMemoryCounterStore { return memory.acquireNow(caps) }
        try checkStoreUp()
        do {
            let store = self.store, lease = permitLease
            return try await Deadline.run(seconds: timeout) { try await store.acquire(caps, holder: holder, lease: lease) }
        } catch {
            markStoreDown()
            throw error
        }
    }

    /// Gives permits back. In a shared store this is a call that may fail: the permits then
    /// lapse at the end of their lease.
    func release(_ keys: [String], holder: String) {
        guard !keys.isEmpty else { return }
        if let memory = store as? InMemoryCounterStore { return memory.releaseNow(keys) }
        let store = self.store, timeout = max(self.timeout, 1)
        Task {
            try? await Deadline.run(seconds: timeout) { try await store.release(keys, holder: holder) }
        }
    }

    private func refusal(_ spec: LimitSpec, retryAfter: Double?, message: String?) -> CSCError {
        stats.withLock { $0.refusals += 1 }
        var headers = [String: String]()
        var description = "Limit '\(spec.name)' (\(spec.summary)) is exhausted"
        if let message { description = "Limit '\(spec.name)' (\(spec.summary)) refused: \(message)" }
        if let retryAfter {
            let seconds = max(1, Int(retryAfter.rounded(.up)))
            headers["Retry-After"] = String(seconds)
            headers["RateLimit"] = "\"\(spec.name)\";r=0;t=\(seconds)"
            if message == nil { description += "; retry in \(seconds) s" }
        }
        switch spec.kind {
        case let .rate(rate, period, _, _): headers["RateLimit-Policy"] = "\"\(spec.name)\";q=\(rate);w=\(Int(period.rounded(.up)))"
        case .concurrency(let cap): headers["RateLimit-Policy"] = "\"\(spec.name)\";q=\(cap)"
        }
        return CSCError(status: 429, error: "limit_exceeded", description: description, headers: headers)
    }

    private func quotaRefusal(tenant: String, quota: Int, used: Int, window: MonthWindow, now: Date) -> CSCError {
        stats.withLock { $0.refusals += 1 }
        let seconds = max(1, Int((window.end - now.timeIntervalSince1970).rounded(.up)))
        let name = "plan/monthlyQuota"
        return CSCError(
            status: 429, error: "limit_exceeded",
            description: "Limit '\(name)': the monthly quota of \(quota) signatures for \(window.key) is used up (\(used) used); it renews at the start of next month (UTC)",
            headers: ["Retry-After": String(seconds), "RateLimit": "\"\(name)\";r=\(max(0, quota - used));t=\(seconds)",
                      "RateLimit-Policy": "\"\(name)\";q=\(quota);w=\(Int(window.end - window.start))"])
    }

    /// The calendar month (UTC) holding `date`, cached: a month changes rarely.
    func month(at date: Date) -> MonthWindow {
        let t = date.timeIntervalSince1970
        if let m = months.withLock({ $0 }), t >= m.start, t < m.end { return m }
        let m = MonthWindow(containing: date)
        months.withLock { $0 = m }
        return m
    }
}

/// A UTC calendar month: the quota period, the same on every instance and in every report.
public struct MonthWindow: Sendable, Equatable {
    public let key: String
    public let start: Double
    public let end: Double

    public init(containing date: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0) ?? calendar.timeZone
        let c = calendar.dateComponents([.year, .month], from: date)
        let first = calendar.date(from: c) ?? date
        let next = calendar.date(byAdding: .month, value: 1, to: first) ?? date.addingTimeInterval(31 * 86400)
        let y = c.year ?? 1970, m = c.month ?? 1
        key = "\(y)-" + (m < 10 ? "0" : "") + "\(m)"
        start = first.timeIntervalSince1970
        end = next.timeIntervalSince1970
    }
}

public struct CounterStoreUnavailable: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { "counter store unavailable: \(reason)" }
}

/// Runs a call with a deadline that holds even if the call ignores cancellation: the caller
/// is answered at the deadline and the call is left to finish (or fail) on its own. Shared by
/// the stores that live across a network (limit counters, sessions).
public enum Deadline {
    /// The call did not answer in time.
    public struct Passed: Error, CustomStringConvertible, Sendable {
        public let seconds: Double
        public var description: String { "no answer within \(seconds) s" }
    }

    final class State<T: Sendable>: Sendable {
        let continuation = Mutex<CheckedContinuation<T, Error>?>(nil)
        let work = Mutex<Task<Void, Never>?>(nil)
        func take() -> CheckedContinuation<T, Error>? { continuation.withLock { $0.take() } }
    }

    public static func run<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let state = State<T>()
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            state.continuation.withLock { $0 = continuation }
            // A Dispatch timer, not a task or an event-loop timer: it fires even when every
            // executor thread and event loop is busy (a loop may be signing inline).
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
                if let c = state.take() {
                    c.resume(throwing: Passed(seconds: seconds))
                    state.work.withLock { $0 }?.cancel()
                }
            }
            let work = Task {
                let result: Result<T, Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                state.take()?.resume(with: result)
            }
            state.work.withLock { $0 = work }
        }
    }
}
