import CSC
import Foundation
import Testing

// MARK: - Hash algorithms (CSC-API.md §6)

struct HashRow: Sendable, CustomTestStringConvertible {
    let oid: String
    let algorithm: HashAlgorithm
    let digestLength: Int
    var testDescription: String { "\(algorithm) \(oid)" }
}

let hashRows: [HashRow] = [
    HashRow(oid: "2.16.840.1.101.3.4.2.1", algorithm: .sha256, digestLength: 32),
    HashRow(oid: "2.16.840.1.101.3.4.2.2", algorithm: .sha384, digestLength: 48),
    HashRow(oid: "2.16.840.1.101.3.4.2.3", algorithm: .sha512, digestLength: 64),
    HashRow(oid: "2.16.840.1.101.3.4.2.8", algorithm: .sha3_256, digestLength: 32),
    HashRow(oid: "2.16.840.1.101.3.4.2.9", algorithm: .sha3_384, digestLength: 48),
    HashRow(oid: "2.16.840.1.101.3.4.2.10", algorithm: .sha3_512, digestLength: 64),
]

@Test("SHA-2 and SHA-3 are accepted, with their digest lengths", arguments: hashRows)
func acceptedHashes(_ row: HashRow) throws {
    let parsed = try HashAlgorithm.parse(row.oid, field: "hashAlgo")
    #expect(parsed == row.algorithm)
    #expect(parsed.digestLength == row.digestLength)
}

@Test("SHA-1 and SHA-224 are refused by name", arguments: ["1.3.14.3.2.26", "2.16.840.1.101.3.4.2.4"])
func weakHashesRefused(_ oid: String) {
    #expect(throws: CSCError.invalidRequest("Invalid parameter hashAlgo: SHA-1 and SHA-224 are too weak for signing")) {
        try HashAlgorithm.parse(oid, field: "hashAlgo")
    }
    #expect(throws: CSCError.invalidRequest("Invalid parameter hashAlgorithmOID: SHA-1 and SHA-224 are too weak for signing")) {
        try HashAlgorithm.parse(oid, field: "hashAlgorithmOID")
    }
}

@Test("an unknown hash OID is 'Invalid parameter <field>'", arguments: ["1.2.3.4", "", "sha256"])
func unknownHash(_ oid: String) {
    #expect(throws: CSCError.invalidRequest("Invalid parameter hashAlgo")) { try HashAlgorithm.parse(oid, field: "hashAlgo") }
}

@Test("the hash a signature OID implies", arguments: [
    (SignatureAlgorithm.sha256WithRSA, HashAlgorithm.sha256), (SignatureAlgorithm.sha384WithRSA, .sha384),
    (SignatureAlgorithm.sha512WithRSA, .sha512), (SignatureAlgorithm.ecdsaWithSHA256, .sha256),
    (SignatureAlgorithm.ecdsaWithSHA384, .sha384), (SignatureAlgorithm.ecdsaWithSHA512, .sha512),
    (SignatureAlgorithm.ecdsaPlainSHA256, .sha256), (SignatureAlgorithm.ecdsaPlainSHA384, .sha384),
    (SignatureAlgorithm.ecdsaPlainSHA512, .sha512),
] as [(String, HashAlgorithm)])
func impliedHash(_ signAlgo: String, _ hash: HashAlgorithm) {
    #expect(SignatureAlgorithm.impliedHash(signAlgo) == hash)
}

@Test("raw RSA and PSS imply no hash: the client must name it", arguments: [
    SignatureAlgorithm.rsaEncryption, SignatureAlgorithm.rsassaPSS,
])
func noImpliedHash(_ signAlgo: String) {
    #expect(SignatureAlgorithm.impliedHash(signAlgo) == nil)
}

// MARK: - JSONValue.serialized()

@Test("keys are sorted at every level, so equal values give equal bytes")
func serializedSortsKeys() {
    let v = JSONValue.object([
        "b": .int(1), "a": .object(["d": .bool(true), "c": .null]), "A": .array([.object(["z": .int(0), "y": .int(1)])]),
    ])
    #expect(String(decoding: v.serialized(), as: UTF8.self) == #"{"A":[{"y":1,"z":0}],"a":{"c":null,"d":true},"b":1}"#)
}

@Test("strings escape quotes, backslashes and control characters")
func serializedEscapes() {
    let v = JSONValue.string("q\"b\\n\nt\tr\r\u{01}\u{1F}\u{7F}é€")
    #expect(String(decoding: v.serialized(), as: UTF8.self) == "\"q\\\"b\\\\n\\nt\\tr\\r\\u0001\\u001f\u{7F}é€\"")
}

@Test("integral numbers print without '.0'; others keep their fraction", arguments: [
    (0.0, "0"), (3.0, "3"), (-42.0, "-42"), (3600.0, "3600"), (4_294_967_296.0, "4294967296"), (1.5, "1.5"),
    (-0.25, "-0.25"),
] as [(Double, String)])
func serializedNumbers(_ n: Double, _ text: String) {
    #expect(String(decoding: JSONValue.number(n).serialized(), as: UTF8.self) == text)
}

@Test("serialized JSON parses back to the same value")
func serializedRoundTrip() throws {
    let v = JSONValue.object([
        "s": .string("line\nbreak \"quoted\" \u{02}"), "n": .number(2048), "f": .number(0.5), "b": .bool(false),
        "z": .null, "a": .array([.string("x"), .int(1), .array([])]), "o": .object([:]),
    ])
    #expect(try JSONValue.parse(v.serialized()) == v)
}

@Test("JSON true/false stay booleans and 0/1 stay numbers")
func boolsAndNumbersStayApart() throws {
    #expect(try JSONValue.parse(Data("[1,true,0,false]".utf8)) == .array([.number(1), .bool(true), .number(0), .bool(false)]))
}

@Test("a CSC error body has exactly error and error_description")
func errorBody() {
    let body = CSCError.invalidRequest("Invalid parameter SAD").body.serialized()
    #expect(String(decoding: body, as: UTF8.self) == #"{"error":"invalid_request","error_description":"Invalid parameter SAD"}"#)
}
