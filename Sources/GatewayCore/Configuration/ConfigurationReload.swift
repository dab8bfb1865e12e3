import Foundation
import Logging
import Synchronization

/// Applies changes to `tenants/` and `policies/` without a restart. The whole configuration is
/// loaded and checked as `cscgate check` does; a change with any issue is refused whole and
/// the running snapshot stays. Requests in flight keep the snapshot they started with.
///
/// Settings of `gateway.yaml` itself (listen address, upstreams, ledger, counters) take effect
/// at the next start; a reload reads the file only to find the tenants and policies.
public final class ConfigurationReload: Sendable {
    public struct Outcome: Sendable {
        public var applied: Bool
        /// What asked for it: `start`, `watch`, `SIGHUP`, `admin:<operator>`.
        public var trigger: String
        public var time: Date
        public var issues: [ConfigurationIssue]
        public var tenants: Int
        public var policies: Int
    }

    let gatewayFile: String
    let gateway: Gateway
    private let last = Mutex<Outcome?>(nil)
    private let fingerprint = Mutex<[String]>([])
    /// One reload at a time: two triggers at once must not interleave load and swap.
    private let serial = Mutex(())

    public init(gatewayFile: String, gateway: Gateway) {
        self.gatewayFile = gatewayFile
        self.gateway = gateway
        fingerprint.withLock { $0 = Self.fingerprint(gateway.configuration) }
    }

    public var lastOutcome: Outcome? { last.withLock { $0 } }

    @discardableResult
    public func reload(trigger: String, logger: Logger) -> Outcome {
        serial.withLock { _ in
            let seen = Self.fingerprint(gateway.configuration)
            let outcome: Outcome
            do {
                let loaded = try ConfigurationLoader.load(gatewayFile: gatewayFile)
                var next = loaded
                // Only tenants and policies change at runtime; the rest waits for a restart.
                next.gateway = gateway.configuration
                // Trust anchors the new tenant files name are read first: if one cannot be, nothing changes.
                try gateway.revocation?.reload(next)
                gateway.replace(next)
                outcome = Outcome(applied: true, trigger: trigger, time: Date(), issues: [], tenants: loaded.tenants.count,
                                  policies: loaded.policies.count)
                logger.notice("configuration reloaded", metadata: [
                    "trigger": .string(trigger), "tenants": .stringConvertible(outcome.tenants),
                    "policies": .stringConvertible(outcome.policies),
                ])
            } catch let error as ConfigurationError {
                outcome = Outcome(applied: false, trigger: trigger, time: Date(), issues: error.issues, tenants: 0, policies: 0)
                logger.error("configuration change refused; the running configuration stays", metadata: [
                    "trigger": .string(trigger), "issues": .stringConvertible(error.issues.count),
                    "first_issue": .string(error.issues.first?.description ?? ""),
                ])
            } catch {
                outcome = Outcome(applied: false, trigger: trigger, time: Date(),
                                  issues: [ConfigurationIssue(file: gatewayFile, line: nil, message: "\(error)")], tenants: 0,
                                  policies: 0)
                logger.error("configuration change refused; the running configuration stays", metadata: ["trigger": .string(trigger)])
            }
            fingerprint.withLock { $0 = seen }
            last.withLock { $0 = outcome }
            return outcome
        }
    }

    /// Polls the modification times of `tenants/` and `policies/` and reloads on a change,
    /// until the task is cancelled.
    public func watch(every seconds: Double, logger: Logger) async {
        guard seconds > 0 else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            let now = Self.fingerprint(gateway.configuration)
            if now != fingerprint.withLock({ $0 }) { reload(trigger: "watch", logger: logger) }
        }
    }

    /// Names, sizes and modification times of every file the reload reads.
    static func fingerprint(_ c: GatewayConfiguration) -> [String] {
        let fm = FileManager.default
        var out = [String]()
        for dir in [c.tenantsDirectory, c.policiesDirectory] {
            for name in ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
                let attributes = try? fm.attributesOfItem(atPath: dir + "/" + name)
                let mtime = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
                out.append("\(dir)/\(name)|\(size)|\(mtime)")
            }
        }
        return out
    }
}
