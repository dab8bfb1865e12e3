import Crypto
import CSC
import Foundation
import GatewayCore
import Synchronization

/// A credential's PIN: a slow salted hash, and a failure count that locks it.
///
/// Each attempt is counted as a failure before the hash is checked and forgiven if it
/// matches, so concurrent guesses cannot get past the limit. The count is kept in
/// `attempts` (the ledger's database): a restart does not unlock, `cscgate keys unlock` does.
final class PINCheck: Sendable {
    let hash: SecretHash
    let maxFailures: Int
    let key: String
    let attempts: any AuthorizationAttempts

    init(hash: SecretHash, maxFailures: Int, key: String, attempts: any AuthorizationAttempts) {
        self.hash = hash; self.maxFailures = maxFailures; self.key = key; self.attempts = attempts
    }

    func verify(_ pin: String?, _ context: OperationContext) async throws {
        guard let pin, !pin.isEmpty else { throw CSCError.invalidRequest("Missing (or invalid type) string parameter PIN") }
        guard try await counted(context, { try await self.attempts.reserve(self.key, limit: self.maxFailures) }) else {
            throw CSCError.invalidRequest("PIN locked")
        }
        // scrypt takes tens of milliseconds: keep it off Swift's cooperative threads.
        let hash = self.hash
        let ok = await withCheckedContinuation { c in
            DispatchQueue.global(qos: .userInitiated).async { c.resume(returning: hash.verify(pin)) }
        }
        guard ok else { throw CSCError.invalidPIN() }
        _ = try await counted(context) { try await self.attempts.accept(self.key, step: nil) }
    }
}

/// An offline TOTP (RFC 6238): codes of the previous, current and next time step are
/// accepted, each step at most once (a code seen before is a replay), and repeated wrong or
/// replayed codes lock it. Failures and the last step accepted are kept in `attempts`.
final class TOTPCheck: Sendable {
    let secret: [UInt8]
    let digits: Int
    let period: Int
    let algorithm: OTPSettings.Algorithm
    let maxFailures: Int
    let key: String
    let attempts: any AuthorizationAttempts
    let now: @Sendable () -> Date

    init(secret: [UInt8], settings: OTPSettings, key: String, attempts: any AuthorizationAttempts,
         now: @escaping @Sendable () -> Date) {
        self.secret = secret; self.digits = settings.digits; self.period = settings.period
        self.algorithm = settings.algorithm; self.maxFailures = settings.maxFailures; self.key = key
        self.attempts = attempts; self.now = now
    }

    func verify(_ otp: String?, _ context: OperationContext) async throws {
        guard let otp, !otp.isEmpty else { throw CSCError.invalidRequest("Missing (or invalid type) string parameter OTP") }
        let step = Int64(now().timeIntervalSince1970) / Int64(period)
        let matched = [step - 1, step, step + 1].first { constantTimeEquals(Self.code(secret, step: $0, digits: digits, algorithm: algorithm), otp) }
        guard try await counted(context, { try await self.attempts.reserve(self.key, limit: self.maxFailures) }) else {
            throw CSCError.invalidRequest("OTP locked")
        }
        guard let matched else { throw CSCError.invalidOTP() }
        guard try await counted(context, { try await self.attempts.accept(self.key, step: matched) }) else {
            throw CSCError.invalidOTP("The OTP was already used; wait for the next one")
        }
    }

    /// RFC 4226 HOTP over the time step (RFC 6238), `digits` long, zero-padded.
    static func code(_ secret: [UInt8], step: Int64, digits: Int, algorithm: OTPSettings.Algorithm) -> String {
        let counter = withUnsafeBytes(of: UInt64(bitPattern: step).bigEndian) { Array($0) }
        let key = SymmetricKey(data: secret)
        let mac: [UInt8]
        switch algorithm {
        case .sha1: mac = Array(HMAC<Insecure.SHA1>.authenticationCode(for: counter, using: key))
        case .sha256: mac = Array(HMAC<SHA256>.authenticationCode(for: counter, using: key))
        case .sha512: mac = Array(HMAC<SHA512>.authenticationCode(for: counter, using: key))
        }
        let offset = Int(mac[mac.count - 1] & 0x0F)
        let binary = (UInt32(mac[offset] & 0x7F) << 24) | (UInt32(mac[offset + 1]) << 16)
            | (UInt32(mac[offset + 2]) << 8) | UInt32(mac[offset + 3])
        var modulus: UInt32 = 1
        for _ in 0..<digits { modulus *= 10 }
        let value = String(binary % modulus)
        return String(repeating: "0", count: digits - value.count) + value
    }

    /// RFC 4648 base32 (authenticator-app secrets), case and padding tolerant.
    static func base32Decode(_ text: String) -> [UInt8]? {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        var lookup = [Character: UInt8]()
        for (i, c) in alphabet.enumerated() { lookup[c] = UInt8(i) }
        var bits: UInt32 = 0, count = 0
        var out = [UInt8]()
        for ch in text.uppercased() where ch != "=" && ch != " " {
            guard let v = lookup[ch] else { return nil }
            bits = (bits << 5) | UInt32(v)
            count += 5
            if count >= 8 {
                out.append(UInt8((bits >> UInt32(count - 8)) & 0xFF))
                count -= 8
            }
        }
        return out.isEmpty ? nil : out
    }
}

/// A count that cannot be read or written refuses the attempt: a PIN is never checked uncounted.
private func counted<T: Sendable>(_ context: OperationContext, _ operation: () async throws -> T) async throws -> T {
    do {
        return try await operation()
    } catch {
        context.logger.error("PIN and OTP attempts cannot be counted", metadata: [
            "error": .string(String(describing: error).prefix(200).description),
        ])
        throw CSCError(status: 503, error: "temporarily_unavailable",
                       description: "PIN and OTP attempts cannot be counted right now; retry later", headers: ["Retry-After": "5"])
    }
}

private func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var diff: UInt8 = 0
    for (p, q) in zip(x, y) { diff |= p ^ q }
    return diff == 0
}

/// The SADs this backend issues: the credential's label and an expiry under an HMAC, kept
/// nowhere. Any instance with the same SAD key accepts them, and a restart keeps them
/// valid. The gateway seals them inside its own SADs and carries budget, hash binding and
/// retirement; this only makes sure a SAD reaching the HSM was issued for this key and is alive.
struct LocalSADs: Sendable {
    private static let prefix = "hsm1."
    let key: SymmetricKey
    let now: @Sendable () -> Date
    /// Expiry of SADs whose tag held, by SAD text and label.
    private let checked = OpenedSADs<Date>()

    init(key: SymmetricKey, now: @escaping @Sendable () -> Date) {
        self.key = key
        self.now = now
    }

    func issue(label: String, lifetime: Int, expires: Date? = nil) -> (sad: String, expiresIn: Int) {
        let t = now()
        let end = expires ?? t.addingTimeInterval(Double(lifetime))
        let body = "\(Int(end.timeIntervalSince1970.rounded(.down)))." + Data(label.utf8).base64URL + "." + randomBytes(12).base64URL
        let tag = Data(HMAC<SHA256>.authenticationCode(for: Data(body.utf8), using: key)).base64URL
        return (Self.prefix + body + "." + tag, max(1, Int(end.timeIntervalSince(t).rounded(.down))))
    }

    /// The SAD's expiry, or the CSC error a client would get for it.
    func check(_ sad: String?, label: String) throws -> Date {
        guard let sad else { throw CSCError.invalidRequest("Invalid parameter SAD") }
        let key = label + "\u{0}" + sad
        let expires: Date
        if let known = checked[key] {
            expires = known
        } else {
            expires = try verify(sad, label: label)
            checked[key] = expires
        }
        guard expires > now() else { throw CSCError.invalidRequest("SAD expired") }
        return expires
    }

    private func verify(_ sad: String, label: String) throws -> Date {
        guard sad.utf8.count < 4096, sad.hasPrefix(Self.prefix) else { throw CSCError.invalidRequest("Invalid parameter SAD") }
        let parts = sad.dropFirst(Self.prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, let tag = Data(base64URL: String(parts[3])),
              HMAC<SHA256>.isValidAuthenticationCode(tag, authenticating: Data(parts[0...2].joined(separator: ".").utf8), using: key),
              let seconds = Int(parts[0]), Data(base64URL: String(parts[1])) == Data(label.utf8)
        else { throw CSCError.invalidRequest("Invalid parameter SAD") }
        return Date(timeIntervalSince1970: Double(seconds))
    }
}
