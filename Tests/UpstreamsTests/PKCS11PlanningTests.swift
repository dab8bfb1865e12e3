import CSC
import Foundation
import GatewayCore
import Testing
@testable import Upstreams

/// The pieces that need no HSM: DigestInfo, PSS parameters, TOTP, subject names.
@Suite struct SigningPlanning {
    @Test("DigestInfo prefixes are the RFC 8017 §9.2 bytes", arguments: [
        (HashAlgorithm.sha256, "3031300d060960864801650304020105000420"),
        (.sha384, "3041300d060960864801650304020205000430"),
        (.sha512, "3051300d060960864801650304020305000440"),
    ])
    func digestInfo(hash: HashAlgorithm, hex: String) {
        #expect(PKCS11SigningPlan.digestInfoPrefix(hash).map { String(format: "%02x", $0) }.joined() == hex)
    }

    @Test("PSS parameters: the CSC-API test vectors, pyHanko's maximum salt, and the NULL-less form", arguments: [
        (PSSVectors.sha256salt32, HashAlgorithm.sha256, 32),
        (PSSVectors.sha384salt48, .sha384, 48),
        (PSSVectors.sha512salt64, .sha512, 64),
        (PSSVectors.pyHankoMax, .sha256, 222),
        (PSSVectors.sha256salt32NoNull, .sha256, 32),
    ])
    func pssParameters(der: Data, hash: HashAlgorithm, salt: Int) throws {
        let p = try PSSParameters.parse(der)
        #expect(p.hash == hash && p.saltLength == salt)
    }

    @Test("PSS parameters that are not DER are invalid_request; an MGF1 hash other than the signature's is carried over")
    func pssRefused() throws {
        #expect(throws: CSCError.self) { try PSSParameters.parse(Data([0x01, 0x02])) }
        // SHA-256 signature hash with MGF1-SHA-384.
        var mixed = [UInt8](PSSVectors.sha256salt32)
        mixed[mixed.count - 8] = 0x02
        #expect(try PSSParameters.parse(Data(mixed)).maskHash == .sha384)
    }

    @Test("TOTP matches the RFC 6238 test vectors (SHA-1, SHA-256, SHA-512; 8 digits)", arguments: [
        (Int64(59), OTPSettings.Algorithm.sha1, "94287082"), (59, .sha256, "46119246"), (59, .sha512, "90693936"),
        (1111111109, .sha1, "07081804"), (2000000000, .sha1, "69279037"), (20000000000, .sha512, "47863826"),
    ])
    func totpVectors(time: Int64, algorithm: OTPSettings.Algorithm, code: String) {
        let seed: String
        switch algorithm {
        case .sha1: seed = "12345678901234567890"
        case .sha256: seed = "12345678901234567890123456789012"
        case .sha512: seed = "1234567890123456789012345678901234567890123456789012345678901234"
        }
        #expect(TOTPCheck.code(Array(seed.utf8), step: time / 30, digits: 8, algorithm: algorithm) == code)
    }

    @Test("base32 secrets decode as authenticator apps write them")
    func base32() {
        #expect(TOTPCheck.base32Decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ") == Array("12345678901234567890".utf8))
        #expect(TOTPCheck.base32Decode("gezd gnbv gy3t qojq") == Array("1234567890".utf8))
        #expect(TOTPCheck.base32Decode("not base32!") == nil)
    }

    @Test("Subjects from flags: RFC 4514 order, escaped commas, two-letter countries")
    func subjects() throws {
        let dn = try PKCS11KeyTool.distinguishedName("CN=Doe\\, Jane,O=ACME,C=de")
        #expect(dn.description.hasSuffix(",O=ACME,C=DE"))
        #expect(Array(dn).count == 3)
        #expect(throws: PKCS11KeyError.self) { try PKCS11KeyTool.distinguishedName("CN=x,C=DEU") }
        #expect(throws: PKCS11KeyError.self) { try PKCS11KeyTool.distinguishedName("XX=y") }
    }
}
