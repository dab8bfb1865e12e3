import Crypto
import CSC
import Foundation
import Synchronization

/// What a gateway SAD stands for. Sealed with AES-GCM, so the client holds it but can neither
/// read the upstream SAD inside nor change what it is bound to.
public struct SADClaims: Sendable, Equatable {
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

    public init(id: String, tenantID: String, clientID: String, credentialID: String, upstreamSAD: String, expires: Int,
                upstreamExpires: Int, numSignatures: Int, hashAlgorithm: String? = nil, hashes: [String]? = nil) {
        self.id = id; self.tenantID = tenantID; self.clientID = clientID; self.credentialID = credentialID
        self.upstreamSAD = upstreamSAD; self.expires = expires; self.upstreamExpires = upstreamExpires
        self.numSignatures = numSignatures; self.hashAlgorithm = hashAlgorithm; self.hashes = hashes
    }

    /// One-letter keys keep the sealed SAD short; the project's JSON reader is several times
    /// cheaper than Codable here, and every signHash opens a SAD.
    var plaintext: Data {
        var o: [String: JSONValue] = [
            "i": .string(id), "t": .string(tenantID), "c": .string(clientID), "k": .string(credentialID),
            "u": .string(upstreamSAD), "e": .number(Double(expires)), "x": .number(Double(upstreamExpires)),
            "n": .number(Double(numSignatures)),
        ]
        if let hashAlgorithm { o["a"] = .string(hashAlgorithm) }
        if let hashes { o["h"] = .array(hashes.map(JSONValue.string)) }
        return JSONObject(o).serialized()
    }

    init?(plaintext: Data) {
        guard let o = try? JSONObject(parsing: plaintext),
              let id = try? o.requiredString("i"), let t = try? o.requiredString("t"), let c = try? o.requiredString("c"),
              let k = try? o.requiredString("k"), let u = try? o.requiredString("u"), let e = try? o.requiredInt("e"),
              let x = try? o.requiredInt("x"), let n = try? o.requiredInt("n"),
              case .some(let a) = Result(catching: { try o.string("a") }).success,
              case .some(let h) = Result(catching: { try o.stringArray("h") }).success
        else { return nil }
        self.init(id: id, tenantID: t, clientID: c, credentialID: k, upstreamSAD: u, expires: e, upstreamExpires: x,
                  numSignatures: n, hashAlgorithm: a, hashes: h)
    }
}

private extension Result {
    var success: Success? { if case .success(let v) = self { v } else { nil } }
}

/// Seals and opens gateway SADs. The key is the gateway's; rotating it invalidates all SADs.
public struct SADSeal: Sendable {
    let key: SymmetricKey
    private static let prefix = "gsad1."
    private static let associatedData = Data("cscgate SAD v1".utf8)
    private let opened = OpenedSADs<SADClaims>()

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
        let plain = claims.plaintext
        let box = try AES.GCM.seal(plain, using: key, authenticating: Self.associatedData)
        guard let combined = box.combined else { throw CSCError.serverError(requestID: "seal") }
        return Self.prefix + combined.base64URL
    }

    /// Opens a SAD; anything forged, truncated or sealed under another key is "Invalid parameter SAD".
    public func open(_ sad: String) throws(CSCError) -> SADClaims {
        if let claims = opened[sad] { return claims }
        let claims = try openSealed(sad)
        opened[sad] = claims
        return claims
    }

    private func openSealed(_ sad: String) throws(CSCError) -> SADClaims {
        // utf8.count: String.count walks grapheme clusters, on every signHash.
        guard sad.utf8.count < 16_384, sad.hasPrefix(Self.prefix),
              let data = Data(base64URL: String(sad.utf8.dropFirst(Self.prefix.utf8.count)) ?? ""),
              let box = try? AES.GCM.SealedBox(combined: data),
              let plain = try? AES.GCM.open(box, using: key, authenticating: Self.associatedData),
              let claims = SADClaims(plaintext: plain)
        else { throw .invalidRequest("Invalid parameter SAD") }
        return claims
    }
}

/// SADs already opened, by their exact text. A client signing a batch presents one SAD for
/// many calls, and opening it again (base64, AES-GCM or HMAC, parsing) was a visible share of
/// each signHash. Only what opened successfully is kept, so a forged or altered SAD is never
/// found here; what the SAD is bound to and its expiry are still checked on every use.
public final class OpenedSADs<Value: Sendable>: Sendable {
    private let entries = Mutex<[String: Value]>([:])
    private let capacity: Int

    public init(capacity: Int = 4096) { self.capacity = capacity }

    public subscript(_ sad: String) -> Value? {
        get { entries.withLock { $0[sad] } }
        set {
            guard let newValue else { return }
            entries.withLock { e in
                // Full: start again rather than track use; a miss only costs one opening.
                if e.count >= capacity { e.removeAll(keepingCapacity: true) }
                e[sad] = newValue
            }
        }
    }
}

/// What each SAD has left to sign. The seal proves what a SAD allows; this remembers what it
/// has already been used for, so a replayed SAD cannot sign twice. Check and decrement happen
/// under one lock, so concurrent requests with one SAD can never overspend it.
///
/// The memory is this process's: a SAD issued before a restart (whose spending is forgotten)
/// is refused as expired, found by the process epoch its id starts with.
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
    /// Prefix of every SAD id issued by this process.
    private let epoch = randomBytes(6).base64URL + "."

    public init(now: @escaping @Sendable () -> Date = Date.init) { self.now = now }

    public func newSADID() -> String { epoch + randomBytes(16).base64URL }

    /// Its budget was kept by an earlier process: what it spent there is unknown here.
    private func requireThisProcess(_ claims: SADClaims) throws(CSCError) {
        guard claims.id.hasPrefix(epoch) else { throw .invalidRequest("SAD expired") }
    }

    /// Takes `hashes` out of the SAD's budget, or refuses without taking anything.
    public func consume(_ claims: SADClaims, hashes: [String]) throws(CSCError) {
        try requireThisProcess(claims)
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
    public func retire(_ claims: SADClaims) throws(CSCError) -> Int {
        try requireThisProcess(claims)
        return state.withLock { s in
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
