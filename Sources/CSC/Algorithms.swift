import Foundation

/// The hash algorithms the CSC API allows (ETSI TS 119 312: SHA-256 or stronger).
public enum HashAlgorithm: String, Sendable, CaseIterable {
    case sha256 = "2.16.840.1.101.3.4.2.1"
    case sha384 = "2.16.840.1.101.3.4.2.2"
    case sha512 = "2.16.840.1.101.3.4.2.3"
    case sha3_256 = "2.16.840.1.101.3.4.2.8"
    case sha3_384 = "2.16.840.1.101.3.4.2.9"
    case sha3_512 = "2.16.840.1.101.3.4.2.10"

    public var oid: String { rawValue }

    public var digestLength: Int {
        switch self {
        case .sha256, .sha3_256: 32
        case .sha384, .sha3_384: 48
        case .sha512, .sha3_512: 64
        }
    }

    /// SHA-1 and SHA-224 are refused by name so the client learns why.
    public static func parse(_ oid: String, field: String) throws -> HashAlgorithm {
        if let h = HashAlgorithm(rawValue: oid) { return h }
        if oid == "1.3.14.3.2.26" || oid == "2.16.840.1.101.3.4.2.4" {
            throw CSCError.invalidRequest("Invalid parameter \(field): SHA-1 and SHA-224 are too weak for signing")
        }
        throw CSCError.invalidRequest("Invalid parameter \(field)")
    }
}

/// Signature algorithm OIDs and what each implies.
public enum SignatureAlgorithm {
    public static let rsaEncryption = "1.2.840.113549.1.1.1"
    public static let rsassaPSS = "1.2.840.113549.1.1.10"
    public static let sha256WithRSA = "1.2.840.113549.1.1.11"
    public static let sha384WithRSA = "1.2.840.113549.1.1.12"
    public static let sha512WithRSA = "1.2.840.113549.1.1.13"
    public static let ecPublicKey = "1.2.840.10045.2.1"
    public static let ecdsaWithSHA256 = "1.2.840.10045.4.3.2"
    public static let ecdsaWithSHA384 = "1.2.840.10045.4.3.3"
    public static let ecdsaWithSHA512 = "1.2.840.10045.4.3.4"
    public static let ecdsaPlainSHA256 = "0.4.0.127.0.7.1.1.4.1.3"
    public static let ecdsaPlainSHA384 = "0.4.0.127.0.7.1.1.4.1.4"
    public static let ecdsaPlainSHA512 = "0.4.0.127.0.7.1.1.4.1.5"

    /// The hash a signature OID fixes, or nil when the client must name it (`hashAlgo`).
    public static func impliedHash(_ signAlgo: String) -> HashAlgorithm? {
        switch signAlgo {
        case sha256WithRSA, ecdsaWithSHA256, ecdsaPlainSHA256: .sha256
        case sha384WithRSA, ecdsaWithSHA384, ecdsaPlainSHA384: .sha384
        case sha512WithRSA, ecdsaWithSHA512, ecdsaPlainSHA512: .sha512
        default: nil
        }
    }

    /// PKCS#1 v1.5 OIDs with a fixed hash, which an RSSP that takes raw RSA plus `hashAlgo` can serve.
    public static let rsaWithHash: [String: HashAlgorithm] = [
        sha256WithRSA: .sha256, sha384WithRSA: .sha384, sha512WithRSA: .sha512,
    ]

    public static func isX962ECDSA(_ oid: String) -> Bool {
        oid == ecdsaWithSHA256 || oid == ecdsaWithSHA384 || oid == ecdsaWithSHA512
    }

    public static func isPlainECDSA(_ oid: String) -> Bool {
        oid.hasPrefix("0.4.0.127.0.7.1.1.4.1.")
    }

    public static func isECDSA(_ oid: String) -> Bool { isX962ECDSA(oid) || isPlainECDSA(oid) }

    /// The specific OIDs added to an RSA credential's `key.algo` when its upstream lists only
    /// `rsaEncryption`: pyHanko looks for the exact OID it is going to use.
    public static let impliedByRSAEncryption = [sha256WithRSA, sha384WithRSA, sha512WithRSA]
}

/// ECDSA signatures come as DER `ECDSA-Sig-Value` (X9.62 OIDs) or as r‖s (BSI plain OIDs);
/// upstreams do not always match the OID, so the gateway normalises by the OID the client named.
public enum ECDSASignatureEncoding {
    /// r‖s lengths of the curves CSC credentials use: P-256, P-384, P-521.
    static let rawLengths: Set<Int> = [64, 96, 132]

    /// Returns the signature in the encoding `signAlgo` asks for, or nil if it cannot be read.
    public static func normalise(_ signature: Data, for signAlgo: String) -> Data? {
        if SignatureAlgorithm.isX962ECDSA(signAlgo) {
            if parseDER(signature) != nil { return signature }
            return rawLengths.contains(signature.count) ? rawToDER(signature) : nil
        }
        if SignatureAlgorithm.isPlainECDSA(signAlgo) {
            if let (r, s) = parseDER(signature) {
                // The plain form pads r and s to the curve size; infer it from the larger one.
                guard let size = [32, 48, 66].first(where: { $0 >= max(r.count, s.count) }) else { return nil }
                return pad(r, to: size) + pad(s, to: size)
            }
            return rawLengths.contains(signature.count) ? signature : nil
        }
        return signature
    }

    public static func rawToDER(_ raw: Data) -> Data? {
        guard raw.count >= 2, raw.count % 2 == 0 else { return nil }
        let half = raw.count / 2
        let r = integerBytes(raw.prefix(half)), s = integerBytes(raw.suffix(half))
        let body = derElement(0x02, r) + derElement(0x02, s)
        return derElement(0x30, body)
    }

    /// Parses `SEQUENCE { INTEGER r, INTEGER s }` and returns r and s without sign padding.
    public static func parseDER(_ der: Data) -> (Data, Data)? {
        let bytes = [UInt8](der)
        var i = 0
        func readLength() -> Int? {
            guard i < bytes.count else { return nil }
            let first = bytes[i]; i += 1
            if first < 0x80 { return Int(first) }
            let n = Int(first & 0x7F)
            guard n >= 1, n <= 2, i + n <= bytes.count else { return nil }
            var len = 0
            for _ in 0..<n { len = (len << 8) | Int(bytes[i]); i += 1 }
            return len
        }
        guard bytes.count > 2, bytes[0] == 0x30 else { return nil }
        i = 1
        guard let seqLen = readLength(), i + seqLen == bytes.count else { return nil }
        var ints = [Data]()
        for _ in 0..<2 {
            guard i < bytes.count, bytes[i] == 0x02 else { return nil }
            i += 1
            guard let len = readLength(), len > 0, i + len <= bytes.count else { return nil }
            var value = Array(bytes[i..<(i + len)])
            i += len
            while value.count > 1 && value[0] == 0 { value.removeFirst() }
            ints.append(Data(value))
        }
        guard i == bytes.count else { return nil }
        return (ints[0], ints[1])
    }

    private static func integerBytes(_ d: Data) -> Data {
        var v = [UInt8](d)
        while v.count > 1 && v[0] == 0 { v.removeFirst() }
        if let first = v.first, first & 0x80 != 0 { v.insert(0, at: 0) }
        return Data(v)
    }

    private static func pad(_ d: Data, to size: Int) -> Data {
        d.count >= size ? d.suffix(size) : Data(repeating: 0, count: size - d.count) + d
    }

    private static func derElement(_ tag: UInt8, _ content: Data) -> Data {
        var out = Data([tag])
        if content.count < 0x80 {
            out.append(UInt8(content.count))
        } else if content.count < 0x100 {
            out.append(contentsOf: [0x81, UInt8(content.count)])
        } else {
            out.append(contentsOf: [0x82, UInt8(content.count >> 8), UInt8(content.count & 0xFF)])
        }
        return out + content
    }
}
