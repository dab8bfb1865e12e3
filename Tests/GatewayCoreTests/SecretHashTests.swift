import Foundation
import GatewayCore
import Testing

// Invariant 4: client secrets at rest are scrypt hashes, never the secret.

private let salt = Data(repeating: 1, count: 16).base64EncodedString()
private let hash = Data(repeating: 2, count: 32).base64EncodedString()

@Suite("SecretHash: scrypt, in a PHC-like string")
struct SecretHashTests {
    @Test("the right secret verifies, a wrong one does not")
    func verify() throws {
        let h = try SecretHash.make(secret: "correct horse battery", logN: 10)
        #expect(h.verify("correct horse battery"))
        for wrong in ["correct horse batterY", "correct horse battery ", "", "correct horse"] {
            #expect(!h.verify(wrong))
        }
    }

    @Test("the encoded form parses back to the same hash, which still verifies")
    func encodedRoundTrip() throws {
        let h = try SecretHash.make(secret: "s3cret-value-0001", logN: 10)
        #expect(h.encoded.hasPrefix("$scrypt$ln=10,r=8,p=1$"))
        #expect(!h.encoded.contains("s3cret"))
        let parsed = try #require(SecretHash(encoded: h.encoded))
        #expect(parsed == h)
        #expect(parsed.verify("s3cret-value-0001"))
    }

    @Test("each hash has its own salt")
    func salted() throws {
        let a = try SecretHash.make(secret: "same", logN: 10), b = try SecretHash.make(secret: "same", logN: 10)
        #expect(a.salt != b.salt)
        #expect(a.hash != b.hash)
    }

    @Test("a well-formed string parses")
    func wellFormed() {
        #expect(SecretHash(encoded: "$scrypt$ln=14,r=8,p=1$\(salt)$\(hash)")?.logN == 14)
    }

    @Test("malformed strings are nil", arguments: [
        "",
        "plain-secret",
        "$scrypt$",
        "$argon2id$ln=14,r=8,p=1$\(salt)$\(hash)",
        "$scrypt$ln=14,r=8$\(salt)$\(hash)",                      // p missing
        "$scrypt$ln=14,r=8,p=x$\(salt)$\(hash)",                  // p not a number
        "$scrypt$ln=9,r=8,p=1$\(salt)$\(hash)",                   // cost too low
        "$scrypt$ln=21,r=8,p=1$\(salt)$\(hash)",                  // cost too high
        "$scrypt$ln=14,r=0,p=1$\(salt)$\(hash)",
        "$scrypt$ln=14,r=8,p=17$\(salt)$\(hash)",
        "$scrypt$ln=14,r=8,p=1$\(Data(repeating: 1, count: 8).base64EncodedString())$\(hash)",   // salt too short
        "$scrypt$ln=14,r=8,p=1$\(salt)$\(Data(repeating: 2, count: 16).base64EncodedString())", // hash too short
        "$scrypt$ln=14,r=8,p=1$not*base64$\(hash)",
        "$scrypt$ln=14,r=8,p=1$\(salt)$\(hash)$extra",
        "$scrypt$ln=14,r=8,p=1$\(salt)",
    ])
    func malformed(_ text: String) {
        #expect(SecretHash(encoded: text) == nil)
    }
}
