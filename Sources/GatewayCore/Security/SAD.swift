import Crypto
import CSC
import Foundation
import Synchronization

/// What a gateway SAD stands for. Sealed with AES-GCM, so the client holds it but can neither
/// read the upstream SAD inside nor change what it is bound to.
public struct SADClaims: Codable, Sendable, Equatable {
    /// Unique per SAD; the key of its spent-signature count.
    public var id: String
    public var tenantID: String
    public var clientID: String
    /// The credential id as the tenant's clients know it, not the upstream's.
    public var credentialID: String
    public var upstreamSAD: String
    /// Unix seconds.
    public var expires: Int
    /// When the upstream SAD itself runs out; a gateway extension never goes past it.
    public var upstreamExpires: Int
    public var numSignatures: Int
    public var hashAlgorithm: String?
    /// SCAL2 only: base64 digests the SAD covers, as a multiset.
    public var hashes: [String]?

    enum CodingKeys: String, CodingKey {
        case id = "i", tenantID = "t", clientID = "c", credentialID = "k", upstreamSAD = "u", expires = "e"
        case upstreamExpires = "x", numSignatures = "n", hashAlgorithm = "a", hashes = "h"
    }
}

/// Seals and opens gateway SADs. The key is the gateway's; rotating it invalidates all SADs.
public struct SADSeal: Sendable {
    private let key: SymmetricKey
    private static let prefix = "gsad1."
    private static let associatedData = Data("cscgate SAD v1".utf8)

    public init(key: SymmetricKey) { self.key = key }

    /// A 32-byte key from base64 text (environment or file).
    public init?(base64Key: String) {
        guard let d = Data(base64Encoded: base64Key.trimmingCharacters(in: .whitespacesAndNewlines)), d.count == 32 else {
            return nil
        }
        self.key = SymmetricKey(data: d)
    }

    public static func randomKey() -> SADSeal { SADSeal(key: SymmetricKey(size: .bits256)) }

    public func seal(_ claims: SADClaims) throws -> String {
        let plain = try JSONEncoder().encode(claims)
        let box = try AES.GCM.seal(plain, using: key, authenticating: Self.associatedData)
        guard let combined = box.combined else { throw CSCError.serverError(requestID: "seal") }
        return Self.prefix + combined.base64URL
    }

    /// Opens a SAD; anything forged, truncated or sealed under another key is "Invalid parameter SAD".
    public func open(_ sad: String) throws(CSCError) -> SADClaims {
        guard sad.hasPrefix(Self.prefix), sad.count < 16_384,
              let data = Data(base64URL: String(sad.dropFirst(Self.prefix.count))),
              let box = try? AES.GCM.SealedBox(combined: data),
              let plain = try? AES.GCM.open(box, using: key, authenticating: Self.associatedData),
              let claims = try? JSONDecoder().decode(SADClaims.self, from: plain)
        else { throw .invalidRequest("Invalid parameter SAD") }
        return claims
    }
}

/// What each SAD has left to sign. The seal proves what a SAD allows; this remembers what it
/// has already been used for, so a replayed SAD cannot sign twice. Check and decrement happen
/// under one lock, so concurrent requests with one SAD can never overspend it.
public final class SADUsage: Sendable {
    struct Remaining {
        var count: Int
        var hashes: [String: Int]?
        let expires: Int
    }

    struct State {
        var remaining: [String: Remaining] = [:]
        /// What a SAD had when `retire` took it, until the extension is done or undone.
        var retired: [String: Remaining] = [:]
        var opsSinceSweep = 0
    }

    private let state = Mutex(State())
    private let now: @Sendable () -> Date

    public init(now: @escaping @Sendable () -> Date = Date.init) { self.now = now }

    /// Takes `hashes` out of the SAD's budget, or refuses without taking anything.
    public func consume(_ claims: SADClaims, hashes: [String]) throws(CSCError) {
        let t = Int(now().timeIntervalSince1970)
        let refusal: CSCError? = state.withLock { s in
            Self.sweepIfDue(&s, at: t)
            var r = s.remaining[claims.id] ?? Remaining(
                count: claims.numSignatures, hashes: claims.hashes.map(Self.multiset), expires: claims.expires)
            guard r.count > 0 else { return .invalidRequest("Invalid parameter SAD: its signatures are used up") }
            guard hashes.count <= r.count else { return .invalidRequest("Numbers of signatures is too high") }
            if var allowed = r.hashes {
                for h in hashes {
                    guard let n = allowed[h], n > 0 else { return .invalidRequest("Hash is not authorized by the SAD") }
                    allowed[h] = n - 1
                }
                r.hashes = allowed
            }
            r.count -= hashes.count
            s.remaining[claims.id] = r
            return nil
        }
        if let refusal { throw refusal }
    }

    /// Gives back what a failed upstream call did not sign.
    public func refund(_ claims: SADClaims, hashes: [String]) {
        state.withLock { s in
            guard var r = s.remaining[claims.id] else { return }
            r.count += hashes.count
            if r.hashes != nil { for h in hashes { r.hashes?[h, default: 0] += 1 } }
            s.remaining[claims.id] = r
        }
    }

    /// Takes everything a SAD has left, in one step, for `extendTransaction`: from here on the
    /// old SAD signs nothing, so an extension racing a signHash cannot double the budget.
    public func retire(_ claims: SADClaims) -> Int {
        state.withLock { s in
            let current = s.remaining[claims.id] ?? Remaining(
                count: claims.numSignatures, hashes: claims.hashes.map(Self.multiset), expires: claims.expires)
            s.retired[claims.id] = current
            s.remaining[claims.id] = Remaining(count: 0, hashes: nil, expires: claims.expires)
            return current.count
        }
    }

    /// The extension is done: forget what the old SAD had.
    public func settle(_ claims: SADClaims) {
        state.withLock { _ = $0.retired.removeValue(forKey: claims.id) }
    }

    /// The extension failed: the old SAD gets back exactly what it had.
    public func restore(_ claims: SADClaims) {
        state.withLock { s in
            if let previous = s.retired.removeValue(forKey: claims.id) { s.remaining[claims.id] = previous }
        }
    }

    public func left(_ claims: SADClaims) -> Int {
        state.withLock { $0.remaining[claims.id]?.count ?? claims.numSignatures }
    }

    static func multiset(_ hashes: [String]) -> [String: Int] {
        hashes.reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    private static func sweepIfDue(_ s: inout State, at t: Int) {
        s.opsSinceSweep += 1
        guard s.opsSinceSweep >= 4096 else { return }
        s.opsSinceSweep = 0
        s.remaining = s.remaining.filter { $0.value.expires > t }
    }
}
