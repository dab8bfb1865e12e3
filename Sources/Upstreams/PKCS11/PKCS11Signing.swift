import CPKCS11
import CSC
import Foundation

/// How one signHash request is carried out on a key: the PKCS#11 mechanism and its parameter,
/// what is handed to `C_Sign` for each digest, and how its output becomes the CSC signature.
public struct PKCS11SigningPlan: Sendable {
    public enum Output: Sendable { case asIs, ecdsaDER }

    public let mechanism: CK_MECHANISM_TYPE
    public let parameter: [UInt8]?
    /// Bytes put in front of each digest (the DigestInfo header for PKCS#1 v1.5).
    public let prefix: [UInt8]
    public let hash: HashAlgorithm
    public let output: Output
    public let maxSignatureLength: Int

    public func input(for digest: Data) -> [UInt8] { prefix + Array(digest) }

    public func encode(_ raw: [UInt8]) -> Data? {
        switch output {
        case .asIs: return Data(raw)
        case .ecdsaDER: return ECDSASignatureEncoding.rawToDER(Data(raw))
        }
    }

    /// The plan for `signAlgo` (with `hashAlgo` where the OID leaves the hash open, and
    /// `signAlgoParams` for PSS) on `key`, or the CSC error that says what to fix.
    public static func make(signAlgo: String, hashAlgo: String?, parameters: Data?, key: PKCS11KeyDescription,
                            digestLengths: [Int]) throws -> PKCS11SigningPlan {
        let plan: PKCS11SigningPlan
        switch (signAlgo, key.kind) {
        case (SignatureAlgorithm.rsaEncryption, .rsa):
            guard let hashAlgo else { throw CSCError.invalidRequest("Missing (or invalid type) string parameter hashAlgo") }
            let hash = try HashAlgorithm.parse(hashAlgo, field: "hashAlgo")
            plan = pkcs1(hash, key)
        case (let oid, .rsa) where SignatureAlgorithm.rsaWithHash[oid] != nil:
            plan = pkcs1(SignatureAlgorithm.rsaWithHash[oid]!, key)
        case (SignatureAlgorithm.rsassaPSS, .rsa(let bits)):
            guard let parameters, !parameters.isEmpty else {
                throw CSCError.invalidRequest("Missing (or invalid type) string parameter signAlgoParams")
            }
            let pss = try PSSParameters.parse(parameters)
            guard [HashAlgorithm.sha256, .sha384, .sha512].contains(pss.hash), [HashAlgorithm.sha256, .sha384, .sha512].contains(pss.maskHash) else {
                throw CSCError.invalidRequest("Invalid parameter signAlgoParams: only SHA-256, SHA-384 and SHA-512 (and MGF1 with them) are supported")
            }
            if let hashAlgo, let named = try? HashAlgorithm.parse(hashAlgo, field: "hashAlgo"), named != pss.hash {
                throw CSCError.invalidRequest("Invalid parameter hashAlgo: signAlgoParams name another hash (\(pss.hash.oid))")
            }
            // EMSA-PSS: emLen = ceil((modBits - 1) / 8) must hold hash, salt and two more bytes.
            let maxSalt = (bits + 6) / 8 - pss.hash.digestLength - 2
            guard pss.saltLength <= maxSalt else {
                throw CSCError.invalidRequest(
                    "Invalid parameter signAlgoParams: salt length \(pss.saltLength) does not fit a \(bits)-bit RSA key with this hash (at most \(maxSalt))")
            }
            var params = CK_RSA_PKCS_PSS_PARAMS(hashAlg: pss.hash.pkcs11Mechanism, mgf: pss.maskHash.pkcs11MGF1,
                                                sLen: CK_ULONG(pss.saltLength))
            plan = PKCS11SigningPlan(mechanism: CKM_RSA_PKCS_PSS, parameter: withUnsafeBytes(of: &params) { Array($0) },
                                     prefix: [], hash: pss.hash, output: .asIs, maxSignatureLength: key.signatureSize)
        case (let oid, .ec) where SignatureAlgorithm.isECDSA(oid):
            guard let hash = SignatureAlgorithm.impliedHash(oid) else { throw CSCError.invalidRequest("Invalid parameter signAlgo") }
            plan = PKCS11SigningPlan(mechanism: CKM_ECDSA, parameter: nil, prefix: [], hash: hash,
                                     output: SignatureAlgorithm.isX962ECDSA(oid) ? .ecdsaDER : .asIs,
                                     maxSignatureLength: key.signatureSize)
        default:
            throw CSCError.invalidRequest("Invalid parameter signAlgo: \(key.typeName) keys do not sign with \(signAlgo)")
        }
        guard digestLengths.allSatisfy({ $0 == plan.hash.digestLength }) else {
            throw CSCError.invalidRequest("Invalid digest value length")
        }
        return plan
    }

    static func pkcs1(_ hash: HashAlgorithm, _ key: PKCS11KeyDescription) -> PKCS11SigningPlan {
        PKCS11SigningPlan(mechanism: CKM_RSA_PKCS, parameter: nil, prefix: digestInfoPrefix(hash), hash: hash, output: .asIs,
                          maxSignatureLength: key.signatureSize)
    }

    /// DER `DigestInfo ::= SEQUENCE { AlgorithmIdentifier { hash OID, NULL }, OCTET STRING digest }`
    /// up to the digest bytes (RFC 8017 §9.2 note 1). Every CSC hash is 2.16.840.1.101.3.4.2.n.
    static func digestInfoPrefix(_ hash: HashAlgorithm) -> [UInt8] {
        let arc = UInt8(hash.oid.split(separator: ".").last.flatMap { UInt8($0) } ?? 1)
        let oid: [UInt8] = [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, arc]
        let algorithm: [UInt8] = [0x30, UInt8(oid.count + 2)] + oid + [0x05, 0x00]
        let n = hash.digestLength
        return [0x30, UInt8(algorithm.count + 2 + n)] + algorithm + [0x04, UInt8(n)]
    }
}

extension HashAlgorithm {
    var pkcs11Mechanism: CK_MECHANISM_TYPE {
        switch self {
        case .sha384: CKM_SHA384
        case .sha512: CKM_SHA512
        default: CKM_SHA256
        }
    }

    var pkcs11MGF1: CK_RSA_PKCS_MGF_TYPE {
        switch self {
        case .sha384: CKG_MGF1_SHA384
        case .sha512: CKG_MGF1_SHA512
        default: CKG_MGF1_SHA256
        }
    }
}
