import CPKCS11
import Crypto
import CryptoExtras
import Foundation
import SwiftASN1
import X509

/// Key types `cscgate keys generate` makes on a token.
public enum PKCS11KeyType: String, Sendable, CaseIterable {
    case rsa2048 = "rsa-2048", rsa3072 = "rsa-3072", rsa4096 = "rsa-4096"
    case p256 = "ec-p256", p384 = "ec-p384"
}

/// An elliptic curve the backend signs with, by its OID.
public enum ECCurve: String, Sendable {
    case p256 = "1.2.840.10045.3.1.7"
    case p384 = "1.3.132.0.34"
    case p521 = "1.3.132.0.35"

    /// `CKA_EC_PARAMS`: the DER OID of the curve.
    var parameters: [UInt8] {
        switch self {
        case .p256: [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
        case .p384: [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22]
        case .p521: [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23]
        }
    }

    init?(parameters: [UInt8]) {
        guard let c = [ECCurve.p256, .p384, .p521].first(where: { $0.parameters == parameters }) else { return nil }
        self = c
    }

    /// Bytes of one coordinate (and of r and s in a plain signature).
    public var coordinateSize: Int {
        switch self { case .p256: 32; case .p384: 48; case .p521: 66 }
    }

    public var bits: Int {
        switch self { case .p256: 256; case .p384: 384; case .p521: 521 }
    }
}

/// A signing key on the token as the gateway needs to know it.
public struct PKCS11KeyDescription: Sendable {
    public enum Kind: Sendable, Equatable {
        case rsa(bits: Int)
        case ec(ECCurve)
    }
    public let label: String
    public let id: [UInt8]
    public let kind: Kind
    public let publicKey: Certificate.PublicKey

    public var bits: Int {
        switch kind {
        case .rsa(let bits): bits
        case .ec(let curve): curve.bits
        }
    }

    /// Bytes of a signature: the modulus size for RSA, r‖s for ECDSA.
    public var signatureSize: Int {
        switch kind {
        case .rsa(let bits): (bits + 7) / 8
        case .ec(let curve): 2 * curve.coordinateSize
        }
    }

    public var typeName: String {
        switch kind {
        case .rsa(let bits): "RSA-\(bits)"
        case .ec(let curve): curve == .p256 ? "EC P-256" : curve == .p384 ? "EC P-384" : "EC P-521"
        }
    }
}

/// What a request asked of the token that the token cannot give.
public struct PKCS11KeyError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

extension PKCS11Session {
    // MARK: Finding keys

    /// The private key labelled `label` (cached per token until a recovery).
    public func privateKey(_ label: String) throws -> CK_OBJECT_HANDLE {
        if let h = token.cachedObject("priv:" + label) { return h }
        let found = try module.findObjects(handle, [
            PKCS11Attribute(CKA_CLASS, ulong: CKO_PRIVATE_KEY), PKCS11Attribute(CKA_LABEL, string: label),
        ], max: 2)
        guard let h = found.first else { throw PKCS11KeyError("no private key labelled '\(label)' on the token") }
        guard found.count == 1 else { throw PKCS11KeyError("more than one private key labelled '\(label)' on the token") }
        token.cacheObject("priv:" + label, h)
        return h
    }

    /// Type, size and public key of the key pair labelled `label`.
    public func describeKey(_ label: String) throws -> PKCS11KeyDescription {
        let priv = try privateKey(label)
        let a = try module.attributes(handle, priv, [CKA_KEY_TYPE, CKA_ID, CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS])
        let id = a[CKA_ID] ?? []
        switch a[CKA_KEY_TYPE]?.ckULong {
        case CKK_RSA:
            guard let n = a[CKA_MODULUS], let e = a[CKA_PUBLIC_EXPONENT] else {
                throw PKCS11KeyError("RSA key '\(label)' does not show its modulus")
            }
            let key = try _RSA.Signing.PublicKey(n: n, e: e)
            let bits = Self.bitLength(n)
            return PKCS11KeyDescription(label: label, id: id, kind: .rsa(bits: bits), publicKey: Certificate.PublicKey(key))
        case CKK_EC:
            guard let params = a[CKA_EC_PARAMS], let curve = ECCurve(parameters: params) else {
                throw PKCS11KeyError("EC key '\(label)' is on a curve cscgate does not sign with")
            }
            // The point lives on the public key object, found by the pair's CKA_ID.
            let pubs = try module.findObjects(handle, [
                PKCS11Attribute(CKA_CLASS, ulong: CKO_PUBLIC_KEY), PKCS11Attribute(CKA_ID, bytes: id),
            ], max: 2)
            guard let pub = pubs.first, let encoded = try module.attributes(handle, pub, [CKA_EC_POINT])[CKA_EC_POINT] else {
                throw PKCS11KeyError("EC key '\(label)' has no public key object with the same CKA_ID")
            }
            let point = Self.unwrapECPoint(encoded, curve: curve)
            let publicKey: Certificate.PublicKey
            switch curve {
            case .p256: publicKey = Certificate.PublicKey(try P256.Signing.PublicKey(x963Representation: point))
            case .p384: publicKey = Certificate.PublicKey(try P384.Signing.PublicKey(x963Representation: point))
            case .p521: publicKey = Certificate.PublicKey(try P521.Signing.PublicKey(x963Representation: point))
            }
            return PKCS11KeyDescription(label: label, id: id, kind: .ec(curve), publicKey: publicKey)
        default:
            throw PKCS11KeyError("key '\(label)' is neither RSA nor EC")
        }
    }

    /// Labels of every private key on the token.
    public func privateKeyLabels() throws -> [String] {
        let found = try module.findObjects(handle, [PKCS11Attribute(CKA_CLASS, ulong: CKO_PRIVATE_KEY)], max: 1024)
        return try found.compactMap { h in
            try module.attributes(handle, h, [CKA_LABEL])[CKA_LABEL].map { String(decoding: $0, as: UTF8.self) }
        }.sorted()
    }

    static func bitLength(_ bigEndian: [UInt8]) -> Int {
        guard let i = bigEndian.firstIndex(where: { $0 != 0 }) else { return 0 }
        return (bigEndian.count - i) * 8 - bigEndian[i].leadingZeroBitCount
    }

    /// `CKA_EC_POINT` is the uncompressed point wrapped in a DER OCTET STRING; some modules
    /// give the bare point.
    static func unwrapECPoint(_ encoded: [UInt8], curve: ECCurve) -> [UInt8] {
        let pointLength = 1 + 2 * curve.coordinateSize
        if encoded.count == pointLength, encoded.first == 0x04 { return encoded }
        if encoded.count > 2, encoded[0] == 0x04 {
            if encoded[1] < 0x80 { return Array(encoded.dropFirst(2)) }
            let n = Int(encoded[1] & 0x7F)
            return Array(encoded.dropFirst(2 + n))
        }
        return encoded
    }

    // MARK: Certificates

    /// The certificates stored for the key, the end entity first, then its chain in order.
    public func certificateChain(for key: PKCS11KeyDescription) throws -> [Certificate] {
        let found = try module.findObjects(handle, [
            PKCS11Attribute(CKA_CLASS, ulong: CKO_CERTIFICATE), PKCS11Attribute(CKA_ID, bytes: key.id),
        ], max: 32)
        var certificates = [Certificate]()
        for h in found {
            guard let der = try module.attributes(handle, h, [CKA_VALUE])[CKA_VALUE],
                  let c = try? Certificate(derEncoded: der) else { continue }
            certificates.append(c)
        }
        return Self.orderChain(certificates, endEntityKey: key.publicKey)
    }

    /// The end entity (the certificate of `endEntityKey`), then each issuer in turn.
    static func orderChain(_ certificates: [Certificate], endEntityKey: Certificate.PublicKey) -> [Certificate] {
        guard var current = certificates.first(where: { $0.publicKey == endEntityKey }) else { return [] }
        var chain = [current]
        var rest = certificates.filter { $0 != current }
        while current.issuer != current.subject,
              let i = rest.firstIndex(where: { $0.subject == current.issuer }) {
            current = rest.remove(at: i)
            chain.append(current)
        }
        return chain
    }

    /// Stores `certificates` (end entity first, then its chain) under the key's `CKA_ID`,
    /// replacing what was stored before. The end entity must certify this key.
    public func importCertificates(_ certificates: [Certificate], for label: String) throws {
        let key = try describeKey(label)
        guard let endEntity = certificates.first(where: { $0.publicKey == key.publicKey }) else {
            throw PKCS11KeyError("no certificate given is for key '\(label)' (public keys differ)")
        }
        let ordered = Self.orderChain(certificates, endEntityKey: key.publicKey)
        let old = try module.findObjects(handle, [
            PKCS11Attribute(CKA_CLASS, ulong: CKO_CERTIFICATE), PKCS11Attribute(CKA_ID, bytes: key.id),
        ], max: 64)
        for h in old { try module.destroyObject(handle, h) }
        for (i, c) in ordered.enumerated() {
            var serializer = DER.Serializer()
            try serializer.serialize(c)
            let subject = try derBytes(of: c.subject)
            let issuer = try derBytes(of: c.issuer)
            var serial = DER.Serializer()
            try serial.serialize(ArraySlice(c.serialNumber.bytes))
            _ = try module.createObject(handle, [
                PKCS11Attribute(CKA_CLASS, ulong: CKO_CERTIFICATE),
                PKCS11Attribute(CKA_CERTIFICATE_TYPE, ulong: CKC_X_509),
                PKCS11Attribute(CKA_TOKEN, true),
                PKCS11Attribute(CKA_PRIVATE, false),
                PKCS11Attribute(CKA_LABEL, string: i == 0 ? label : "\(label) chain \(i)"),
                PKCS11Attribute(CKA_ID, bytes: key.id),
                PKCS11Attribute(CKA_CERTIFICATE_CATEGORY, ulong: c == endEntity ? 1 : 2),
                PKCS11Attribute(CKA_SUBJECT, bytes: subject),
                PKCS11Attribute(CKA_ISSUER, bytes: issuer),
                PKCS11Attribute(CKA_SERIAL_NUMBER, bytes: serial.serializedBytes),
                PKCS11Attribute(CKA_VALUE, bytes: serializer.serializedBytes),
            ])
        }
    }

    private func derBytes(of element: some DERSerializable) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(element)
        return serializer.serializedBytes
    }

    // MARK: Key generation

    /// A new key pair labelled `label`: private half sensitive and never extractable.
    public func generateKey(_ type: PKCS11KeyType, label: String) throws -> PKCS11KeyDescription {
        let existing = try module.findObjects(handle, [
            PKCS11Attribute(CKA_CLASS, ulong: CKO_PRIVATE_KEY), PKCS11Attribute(CKA_LABEL, string: label),
        ], max: 1)
        guard existing.isEmpty else { throw PKCS11KeyError("a key labelled '\(label)' already exists on the token") }
        var id = [UInt8](repeating: 0, count: 16)
        for i in id.indices { id[i] = UInt8.random(in: 0...255) }
        let common = [PKCS11Attribute(CKA_TOKEN, true), PKCS11Attribute(CKA_LABEL, string: label), PKCS11Attribute(CKA_ID, bytes: id)]
        let privateTemplate = common + [
            PKCS11Attribute(CKA_PRIVATE, true), PKCS11Attribute(CKA_SENSITIVE, true),
            PKCS11Attribute(CKA_EXTRACTABLE, false), PKCS11Attribute(CKA_SIGN, true),
        ]
        var publicTemplate = common + [PKCS11Attribute(CKA_VERIFY, true), PKCS11Attribute(CKA_PRIVATE, false)]
        let mechanism: CK_MECHANISM_TYPE
        switch type {
        case .rsa2048, .rsa3072, .rsa4096:
            let bits: CK_ULONG = type == .rsa2048 ? 2048 : type == .rsa3072 ? 3072 : 4096
            publicTemplate += [PKCS11Attribute(CKA_MODULUS_BITS, ulong: bits),
                               PKCS11Attribute(CKA_PUBLIC_EXPONENT, bytes: [0x01, 0x00, 0x01])]
            mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN
        case .p256, .p384:
            publicTemplate.append(PKCS11Attribute(CKA_EC_PARAMS, bytes: (type == .p256 ? ECCurve.p256 : .p384).parameters))
            mechanism = CKM_EC_KEY_PAIR_GEN
        }
        _ = try module.generateKeyPair(handle, mechanism: mechanism, publicTemplate: publicTemplate, privateTemplate: privateTemplate)
        token.forgetObjects()
        return try describeKey(label)
    }
}
