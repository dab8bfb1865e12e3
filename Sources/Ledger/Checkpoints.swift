import Crypto
import Foundation

/// Signs the head of a tenant's chain every `interval` events with the gateway's Ed25519 key,
/// so that rewriting the whole chain (recomputing every hash) is detectable too: the rewriter
/// would also need the key.
public struct CheckpointSigner: Sendable {
    let key: Curve25519.Signing.PrivateKey
    public let interval: Int

    public init(key: Curve25519.Signing.PrivateKey, interval: Int) {
        self.key = key
        self.interval = max(1, interval)
    }

    /// A 32-byte raw Ed25519 private key, base64, in a file; created there if missing.
    public static func loadOrCreate(keyFile: String, interval: Int) throws -> CheckpointSigner {
        if let existing = try load(keyFile: keyFile, interval: interval) { return existing }
        let key = Curve25519.Signing.PrivateKey()
        let created = FileManager.default.createFile(
            atPath: keyFile, contents: Data(key.rawRepresentation.base64EncodedString().utf8),
            attributes: [.posixPermissions: 0o600])
        guard created else { throw CocoaError(.fileWriteUnknown) }
        return CheckpointSigner(key: key, interval: interval)
    }

    /// The key in `keyFile`, or nil when there is none (a reader must not make one).
    public static func load(keyFile: String, interval: Int) throws -> CheckpointSigner? {
        guard let text = FileManager.default.contents(atPath: keyFile).flatMap({ String(data: $0, encoding: .utf8) }),
              let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return CheckpointSigner(key: try .init(rawRepresentation: raw), interval: interval)
    }

    public var publicKey: Curve25519.Signing.PublicKey { key.publicKey }

    /// Names the key without revealing it: the first 8 bytes of the public key's SHA-256.
    public static func keyID(_ key: Curve25519.Signing.PublicKey) -> String {
        SHA256.hash(data: key.rawRepresentation).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    static func message(tenant: String, seq: Int64, hash: Data, timeMs: Int64) -> Data {
        Data("cscgate-checkpoint-v1\u{0}\(tenant)\u{0}\(seq)\u{0}\(hash.base64EncodedString())\u{0}\(timeMs)".utf8)
    }

    /// A checkpoint over `head`, to be stored in the same transaction as the events it covers.
    func sign(tenant: String, head: ChainHead) throws -> Checkpoint {
        let timeMs = Int64(Date().timeIntervalSince1970 * 1000)
        let signature = try key.signature(for: Self.message(tenant: tenant, seq: head.seq, hash: head.hash, timeMs: timeMs))
        return Checkpoint(tenant: tenant, seq: head.seq, hash: head.hash, timeMs: timeMs, keyID: Self.keyID(key.publicKey),
                          signature: signature)
    }
}
