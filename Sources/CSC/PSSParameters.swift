import Foundation

/// RSASSA-PSS-params (RFC 4055) as sent in `signAlgoParams`: the hash decides the digest
/// length, and the salt length must fit the key. Parsed here so that bad parameters are the
/// client's 400, not an upstream's crash.
public struct PSSParameters: Sendable, Equatable {
    public let hash: HashAlgorithm
    public let maskHash: HashAlgorithm
    public let saltLength: Int

    /// RFC 4055 defaults are SHA-1 with salt 20; SHA-1 is refused, so an empty SEQUENCE is too.
    public static func parse(_ der: Data) throws -> PSSParameters {
        var reader = DERReader(der)
        guard var seq = try? reader.element(tag: 0x30), reader.atEnd else { throw invalid("not DER RSASSA-PSS-params") }
        var hashOID = "1.3.14.3.2.26", maskHashOID: String?, salt = 20
        while !seq.atEnd {
            guard let (tag, content) = try? seq.anyElement() else { throw invalid("not DER RSASSA-PSS-params") }
            var inner = DERReader(content)
            switch tag {
            case 0xA0:
                guard let oid = try? inner.algorithmOID() else { throw invalid("unreadable hashAlgorithm") }
                hashOID = oid
            case 0xA1:
                // MaskGenAlgorithm: SEQUENCE { id-mgf1, AlgorithmIdentifier of its hash }
                guard var mgf = try? inner.element(tag: 0x30), let mgfOID = try? mgf.oid(), mgfOID == "1.2.840.113549.1.1.8",
                      let h = try? mgf.algorithmOID() else { throw invalid("maskGenAlgorithm must be MGF1") }
                maskHashOID = h
            case 0xA2:
                guard let n = try? inner.integer(), n >= 0, n < 4096 else { throw invalid("unreadable saltLength") }
                salt = n
            case 0xA3:
                guard let t = try? inner.integer(), t == 1 else { throw invalid("trailerField must be 1") }
            default:
                throw invalid("unknown field")
            }
        }
        let hash = try HashAlgorithm.parse(hashOID, field: "signAlgoParams")
        let mask = try HashAlgorithm.parse(maskHashOID ?? hashOID, field: "signAlgoParams")
        return PSSParameters(hash: hash, maskHash: mask, saltLength: salt)
    }

    /// RFC 8017 §9.1.1: emLen ≥ hLen + sLen + 2, with emLen = ⌈(modBits − 1) / 8⌉.
    public func maxSaltLength(keyBits: Int) -> Int {
        (keyBits - 1 + 7) / 8 - hash.digestLength - 2
    }

    static func invalid(_ why: String) -> CSCError {
        CSCError.invalidRequest("Invalid parameter signAlgoParams: \(why)")
    }
}

/// Just enough DER to read algorithm parameters; anything unexpected is an error, never a crash.
struct DERReader {
    private let bytes: [UInt8]
    private var index = 0

    init(_ data: Data) { bytes = [UInt8](data) }
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { index >= bytes.count }

    struct Malformed: Error {}

    mutating func anyElement() throws -> (UInt8, [UInt8]) {
        guard index < bytes.count else { throw Malformed() }
        let tag = bytes[index]; index += 1
        guard index < bytes.count else { throw Malformed() }
        var length = Int(bytes[index]); index += 1
        if length & 0x80 != 0 {
            let n = length & 0x7F
            guard (1...3).contains(n), index + n <= bytes.count else { throw Malformed() }
            length = 0
            for _ in 0..<n { length = length << 8 | Int(bytes[index]); index += 1 }
        }
        guard index + length <= bytes.count else { throw Malformed() }
        defer { index += length }
        return (tag, Array(bytes[index..<(index + length)]))
    }

    mutating func element(tag: UInt8) throws -> DERReader {
        let (t, content) = try anyElement()
        guard t == tag else { throw Malformed() }
        return DERReader(content)
    }

    mutating func oid() throws -> String {
        let (t, content) = try anyElement()
        guard t == 0x06, let first = content.first else { throw Malformed() }
        var arcs = [first < 80 ? Int(first) / 40 : 2, first < 80 ? Int(first) % 40 : Int(first) - 80]
        var value = 0
        for b in content.dropFirst() {
            guard value < (1 << 50) else { throw Malformed() }
            value = value << 7 | Int(b & 0x7F)
            if b & 0x80 == 0 { arcs.append(value); value = 0 }
        }
        return arcs.map(String.init).joined(separator: ".")
    }

    /// AlgorithmIdentifier's OID; NULL or absent parameters both accepted.
    mutating func algorithmOID() throws -> String {
        var seq = try element(tag: 0x30)
        let oid = try seq.oid()
        if !seq.atEnd {
            let (t, content) = try seq.anyElement()
            guard t == 0x05, content.isEmpty, seq.atEnd else { throw Malformed() }
        }
        return oid
    }

    mutating func integer() throws -> Int {
        let (t, content) = try anyElement()
        guard t == 0x02, !content.isEmpty, content.count <= 4, content[0] & 0x80 == 0 else { throw Malformed() }
        return content.reduce(0) { $0 << 8 | Int($1) }
    }
}
