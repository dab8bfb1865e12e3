import Foundation
import Synchronization

/// Failed PIN and OTP attempts of the gateway's own (PKCS#11) credentials, and the last OTP
/// time step each one accepted. Kept in the ledger's database when there is one, so that a
/// restart does not unlock a PIN or forget a used OTP, and several gateway instances on one
/// PostgreSQL share one count instead of granting each its own set of guesses.
///
/// `key` names one factor of one credential, e.g. `hsm/demo-ec/pin`.
public protocol AuthorizationAttempts: Sendable {
    /// Counts an attempt as failed before the factor is checked, so concurrent guesses cannot
    /// pass the limit: false (and nothing counted) when `limit` failures are already recorded.
    func reserve(_ key: String, limit: Int) async throws -> Bool
    /// The factor matched: its failures go back to zero. With `step` (a TOTP time step), only
    /// if `step` is later than the last step accepted, which it then becomes; false otherwise
    /// (the code was used before), and the reserved failure stays.
    func accept(_ key: String, step: Int64?) async throws -> Bool
    /// Failures recorded now.
    func failures(_ key: String) async throws -> Int
    /// Forgets the failures (an operator unlocking a PIN or an OTP); the last OTP step stays.
    func unlock(_ key: String) async throws
}

/// In this process only: what the gateway uses without a ledger (`ledger.enabled: false`) and
/// what `cscgate keys` uses. A restart unlocks.
public final class AttemptsInMemory: AuthorizationAttempts {
    private struct Entry {
        var failures = 0
        var lastStep: Int64 = -1
    }

    private let entries = Mutex<[String: Entry]>([:])

    public init() {}

    public func reserve(_ key: String, limit: Int) -> Bool {
        entries.withLock { all in
            var e = all[key] ?? Entry()
            guard e.failures < limit else { return false }
            e.failures += 1
            all[key] = e
            return true
        }
    }

    public func accept(_ key: String, step: Int64?) -> Bool {
        entries.withLock { all in
            var e = all[key] ?? Entry()
            if let step {
                guard step > e.lastStep else { return false }
                e.lastStep = step
            }
            e.failures = 0
            all[key] = e
            return true
        }
    }

    public func failures(_ key: String) -> Int { entries.withLock { $0[key]?.failures ?? 0 } }

    public func unlock(_ key: String) { entries.withLock { _ = $0[key]?.failures = 0 } }
}
