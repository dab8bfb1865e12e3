import Crypto
import CryptoExtras
import Foundation

/// A client secret at rest: scrypt with a random salt, in a PHC-like string
/// `$scrypt$ln=14,r=8,p=1$<salt>$<hash>`, so the secret itself is never stored.
public struct SecretHash: Sendable, Equatable {
    public let logN: Int
    public let r: Int
    public let p: Int
    public let salt: Data
    public let hash: Data

    public static let defaultLogN = 14

    public init?(encoded: String) {
        let parts = encoded.split(separator: "$", omittingEmptySubsequences: true)
        guard parts.count == 4, parts[0] == "scrypt" else { return nil }
        var params = [String: Int]()
        for kv in parts[1].split(separator: ",") {
            let pair = kv.split(separator: "=")
            guard pair.count == 2, let v = Int(pair[1]) else { return nil }
            params[String(pair[0])] = v
        }
        guard let ln = params["ln"], let r = params["r"], let p = params["p"], (10...20).contains(ln), (1...32).contains(r),
              (1...16).contains(p), let salt = Data(base64Encoded: String(parts[2])), salt.count >= 16,
              let hash = Data(base64Encoded: String(parts[3])), hash.count == 32 else { return nil }
        self.logN = ln; self.r = r; self.p = p; self.salt = salt; self.hash = hash
    }

    private init(logN: Int, r: Int, p: Int, salt: Data, hash: Data) {
        self.logN = logN; self.r = r; self.p = p; self.salt = salt; self.hash = hash
    }

    public static func make(secret: String, logN: Int = defaultLogN) throws -> SecretHash {
        var salt = Data(count: 16)
        for i in 0..<16 { salt[i] = UInt8.random(in: 0...255) }
        let hash = try derive(secret, salt: salt, logN: logN, r: 8, p: 1)
        return SecretHash(logN: logN, r: 8, p: 1, salt: salt, hash: hash)
    }

    public var encoded: String {
        "$scrypt$ln=\(logN),r=\(r),p=\(p)$\(salt.base64EncodedString())$\(hash.base64EncodedString())"
    }

    public func verify(_ secret: String) -> Bool {
        guard let candidate = try? Self.derive(secret, salt: salt, logN: logN, r: r, p: p) else { return false }
        return constantTimeEqual(candidate, hash)
    }

    private static func derive(_ secret: String, salt: Data, logN: Int, r: Int, p: Int) throws -> Data {
        let key = try KDF.Scrypt.deriveKey(from: Data(secret.utf8), salt: salt, outputByteCount: 32,
                                           rounds: 1 << logN, blockSize: r, parallelism: p,
                                           maxMemory: 256 << 20)
        return key.withUnsafeBytes { Data($0) }
    }
}

func constantTimeEqual(_ a: Data, _ b: Data) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for (x, y) in zip(a, b) { diff |= x ^ y }
    return diff == 0
}

public func randomBytes(_ n: Int) -> Data {
    var g = SystemRandomNumberGenerator()
    return Data((0..<n).map { _ in UInt8.random(in: 0...255, using: &g) })
}

extension Data {
    /// Byte-wise, not through Foundation's string search: this runs for every SAD.
    public var base64URL: String {
        var bytes = [UInt8]()
        bytes.reserveCapacity((count + 2) / 3 * 4)
        for b in base64EncodedData() {
            switch b {
            case UInt8(ascii: "+"): bytes.append(UInt8(ascii: "-"))
            case UInt8(ascii: "/"): bytes.append(UInt8(ascii: "_"))
            case UInt8(ascii: "="): continue
            default: bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public init?(base64URL s: String) {
        var bytes = [UInt8]()
        bytes.reserveCapacity(s.utf8.count + 3)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "-"): bytes.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): bytes.append(UInt8(ascii: "/"))
            default: bytes.append(b)
            }
        }
        while bytes.count % 4 != 0 { bytes.append(UInt8(ascii: "=")) }
        self.init(base64Encoded: Data(bytes))
    }

    /// Lower-case hex, without a format string per byte.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        for b in self {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
