import Foundation
import Logging
import Synchronization

/// A tenant's monthly quota crossed a threshold (80 %, 95 %…) or refused (100 %).
public struct QuotaEvent: Sendable, Equatable {
    public var time: Date
    public var tenant: String
    /// `2026-11`: the UTC month of the quota.
    public var month: String
    public var percent: Int
    public var used: Int
    public var quota: Int
    /// True when an operation was refused because the quota was used up.
    public var refused: Bool
}

/// Quota events for the operator: logged, and kept (the last 1,000) for the admin API. Each
/// threshold of each tenant and month is raised once by the instance whose charge crossed it.
public final class QuotaAlerts: Sendable {
    struct State {
        var events: [QuotaEvent] = []
        var raised: Set<String> = []
    }

    private let state = Mutex(State())
    private let now: @Sendable () -> Date

    public init(now: @escaping @Sendable () -> Date = Date.init) { self.now = now }

    public var events: [QuotaEvent] { state.withLock { $0.events } }

    /// Raises every threshold (and 100 %) that `before → after` crossed.
    func check(tenant: String, month: String, before: Int, after: Int, quota: Int, thresholds: [Int], _ context: OperationContext) {
        for percent in thresholds + [100] {
            let mark = (quota * percent + 99) / 100
            if before < mark && after >= mark {
                raise(tenant: tenant, month: month, percent: percent, used: after, quota: quota, refused: false, context)
            }
        }
    }

    func raise(tenant: String, month: String, percent: Int, used: Int, quota: Int, refused: Bool, _ context: OperationContext) {
        let key = "\(tenant)|\(month)|\(percent)"
        let event = QuotaEvent(time: now(), tenant: tenant, month: month, percent: percent, used: used, quota: quota,
                               refused: refused)
        let fresh = state.withLock { s -> Bool in
            guard s.raised.insert(key).inserted else { return false }
            s.events.append(event)
            if s.events.count > 1000 { s.events.removeFirst(s.events.count - 1000) }
            return true
        }
        guard fresh else { return }
        context.logger.warning(refused ? "monthly quota used up: signing refused" : "monthly quota threshold reached", metadata: [
            "tenant": .string(tenant), "month": .string(month), "percent": .stringConvertible(percent),
            "used": .stringConvertible(used), "quota": .stringConvertible(quota),
        ])
    }
}
