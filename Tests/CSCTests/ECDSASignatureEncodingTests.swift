import CSC
import Foundation
import Testing

// CSC-API.md §6 and §10.9: X9.62 OIDs promise DER ECDSA-Sig-Value, the BSI plain OIDs promise
// r‖s. Upstreams do not always keep the promise, so the gateway converts by the OID the client
// named. Fixed vectors cover the edge cases: a high bit that needs a 0x00 pad in DER, leading
// zero bytes that DER drops and r‖s must restore, and a P-521 sequence long enough for a
// long-form DER length.

struct ECDSAVector: Sendable, CustomTestStringConvertible {
    let name: String
    /// r‖s, each half padded to the curve size.
    let raw: Data
    /// The DER the X9.62 OIDs promise, written out by hand.
    let der: Data
    let x962: String
    let plain: String
    var testDescription: String { name }
}

let ecdsaVectors: [ECDSAVector] = [
    ECDSAVector(
        name: "P-256: r with the high bit set (0x00 pad), s with two leading zero bytes",
        raw: Data(hex: "80" + hexRepeat("11", 31) + "0000" + "7f" + hexRepeat("22", 29)),
        der: Data(hex: "3043" + "0221" + "00" + "80" + hexRepeat("11", 31) + "021e" + "7f" + hexRepeat("22", 29)),
        x962: SignatureAlgorithm.ecdsaWithSHA256, plain: SignatureAlgorithm.ecdsaPlainSHA256),
    ECDSAVector(
        name: "P-256: neither half needs padding",
        raw: Data(hex: "7f" + hexRepeat("01", 31) + "10" + hexRepeat("02", 31)),
        der: Data(hex: "3044" + "0220" + "7f" + hexRepeat("01", 31) + "0220" + "10" + hexRepeat("02", 31)),
        x962: SignatureAlgorithm.ecdsaWithSHA256, plain: SignatureAlgorithm.ecdsaPlainSHA256),
    ECDSAVector(
        name: "P-384: both halves with the high bit set",
        raw: Data(hex: hexRepeat("ff", 48) + "c0" + hexRepeat("33", 47)),
        der: Data(hex: "3066" + "0231" + "00" + hexRepeat("ff", 48) + "0231" + "00" + "c0" + hexRepeat("33", 47)),
        x962: SignatureAlgorithm.ecdsaWithSHA384, plain: SignatureAlgorithm.ecdsaPlainSHA384),
    ECDSAVector(
        name: "P-384: short r (one leading zero byte), plain s",
        raw: Data(hex: "00" + "01" + hexRepeat("44", 46) + "01" + hexRepeat("55", 47)),
        der: Data(hex: "3063" + "022f" + "01" + hexRepeat("44", 46) + "0230" + "01" + hexRepeat("55", 47)),
        x962: SignatureAlgorithm.ecdsaWithSHA384, plain: SignatureAlgorithm.ecdsaPlainSHA384),
    ECDSAVector(
        name: "P-521: long-form DER length (0x81), s needing a pad after its leading zero is dropped",
        raw: Data(hex: "01" + hexRepeat("aa", 65) + "00" + hexRepeat("bb", 65)),
        der: Data(hex: "308188" + "0242" + "01" + hexRepeat("aa", 65) + "0242" + "00" + hexRepeat("bb", 65)),
        x962: SignatureAlgorithm.ecdsaWithSHA512, plain: SignatureAlgorithm.ecdsaPlainSHA512),
]

@Test("r‖s → DER → r‖s round-trips", arguments: ecdsaVectors)
func ecdsaRoundTrip(_ v: ECDSAVector) throws {
    #expect(ECDSASignatureEncoding.rawToDER(v.raw) == v.der)
    let (r, s) = try #require(ECDSASignatureEncoding.parseDER(v.der))
    #expect(r.first != 0 || r.count == 1)
    #expect(s.first != 0 || s.count == 1)
    #expect(ECDSASignatureEncoding.normalise(v.der, for: v.plain) == v.raw)
}

@Test("an X9.62 OID gets DER: DER is left alone, r‖s is converted", arguments: ecdsaVectors)
func x962GetsDER(_ v: ECDSAVector) {
    #expect(ECDSASignatureEncoding.normalise(v.der, for: v.x962) == v.der)
    #expect(ECDSASignatureEncoding.normalise(v.raw, for: v.x962) == v.der)
}

@Test("a plain (BSI) OID gets r‖s: r‖s is left alone, DER is converted", arguments: ecdsaVectors)
func plainGetsRaw(_ v: ECDSAVector) {
    #expect(ECDSASignatureEncoding.normalise(v.raw, for: v.plain) == v.raw)
    #expect(ECDSASignatureEncoding.normalise(v.der, for: v.plain) == v.raw)
}

@Test("a non-ECDSA signature passes untouched")
func rsaUntouched() {
    let sig = Data(repeating: 0x5a, count: 256)
    #expect(ECDSASignatureEncoding.normalise(sig, for: SignatureAlgorithm.sha256WithRSA) == sig)
}

struct GarbageRow: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: Data
    var testDescription: String { name }
}

private let p256DER = ecdsaVectors[0].der

let ecdsaGarbage: [GarbageRow] = [
    GarbageRow(name: "empty", bytes: Data()),
    GarbageRow(name: "one byte", bytes: Data([0x30])),
    GarbageRow(name: "odd length", bytes: Data([1, 2, 3])),
    GarbageRow(name: "DER cut by one byte (68 bytes: no curve has 34-byte scalars)", bytes: Data(p256DER.dropLast(1))),
    GarbageRow(name: "DER cut by two bytes (odd length)", bytes: Data(p256DER.dropLast(2))),
    GarbageRow(name: "DER with a byte appended (70 bytes)", bytes: p256DER + Data([0x00])),
]

@Test("a signature that cannot be read is nil, never passed on as something else", arguments: ecdsaGarbage)
func ecdsaGarbageIsNil(_ row: GarbageRow) {
    #expect(ECDSASignatureEncoding.normalise(row.bytes, for: SignatureAlgorithm.ecdsaWithSHA256) == nil)
    #expect(ECDSASignatureEncoding.normalise(row.bytes, for: SignatureAlgorithm.ecdsaPlainSHA256) == nil)
}

@Test("parseDER refuses what is not exactly SEQUENCE { INTEGER, INTEGER }", arguments: [
    "3006020101020101ff",   // trailing byte
    "3106020101020101",     // not a SEQUENCE
    "3006030101020101",     // BIT STRING where an INTEGER belongs
    "3007020101020201",     // sequence length beyond the data
    "300402010102",         // second INTEGER without a length
    "3000",                 // empty sequence
])
func parseDERRefuses(_ hex: String) {
    #expect(ECDSASignatureEncoding.parseDER(Data(hex: hex)) == nil)
}
