import CPKCS11
import Crypto
import CryptoExtras
import CSC
import Foundation
import GatewayCore
import SwiftASN1
import X509

/// Key and certificate lifecycle on a token, for `cscgate keys`: generate a key pair on the
/// token, make a PKCS#10 request signed by it, attach the issued certificate and chain, list.
public struct PKCS11KeyTool: Sendable {
    public let token: PKCS11Token

    public init(token: PKCS11Token) { self.token = token }

    /// Opens the token of a `kind: pkcs11` upstream with one session.
    public init(settings: PKCS11Settings) throws {
        self.token = try PKCS11Token(modulePath: settings.modulePath, tokenLabel: settings.tokenLabel,
                                     slot: settings.slot.map { UInt($0) }, pin: try settings.pin.resolve(), sessions: 1)
    }

    public struct Listing: Sendable {
        public let label: String
        public let type: String
        public let certificates: Int
        public let subject: String?
        public let issuer: String?
        public let notAfter: Date?
    }

    public func generate(_ type: PKCS11KeyType, label: String) async throws -> PKCS11KeyDescription {
        try await token.withSession { try $0.generateKey(type, label: label) }
    }

    public func list() async throws -> [Listing] {
        try await token.withSession { session in
            try session.privateKeyLabels().map { label in
                guard let key = try? session.describeKey(label) else {
                    return Listing(label: label, type: "unsupported", certificates: 0, subject: nil, issuer: nil, notAfter: nil)
                }
                let chain = try session.certificateChain(for: key)
                return Listing(label: label, type: key.typeName, certificates: chain.count, subject: chain.first?.subject.description,
                               issuer: chain.first?.issuer.description, notAfter: chain.first?.notValidAfter)
            }
        }
    }

    /// A PEM PKCS#10 request for the key labelled `label`, signed on the token
    /// (sha256WithRSAEncryption or ecdsa-with-SHA256/384), subject like `CN=Jane Doe,O=ACME,C=DE`.
    public func certificateSigningRequest(label: String, subject: String) async throws -> String {
        let name = try Self.distinguishedName(subject)
        return try await token.withSession { session in
            let key = try session.describeKey(label)
            let privateKey = try session.privateKey(label)
            let algorithm: Certificate.SignatureAlgorithm
            let hash: HashAlgorithm
            switch key.kind {
            case .rsa: (algorithm, hash) = (.sha256WithRSAEncryption, .sha256)
            case .ec(let curve): (algorithm, hash) = curve == .p256 ? (.ecdsaWithSHA256, .sha256) : (.ecdsaWithSHA384, .sha384)
            }
            // The request info is what gets signed: serialise a request with a placeholder
            // signature and take its first element.
            var isRSA = false
            if case .rsa = key.kind { isRSA = true }
            let placeholder = try Certificate.Signature(
                signatureAlgorithm: algorithm,
                signatureBytes: ASN1BitString(bytes: isRSA ? [0] : [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]))
            let draft = try CertificateSigningRequest(version: .v1, subject: name, publicKey: key.publicKey,
                                                      attributes: CertificateSigningRequest.Attributes(), signatureAlgorithm: algorithm,
                                                      signature: placeholder)
            var serializer = DER.Serializer()
            try serializer.serialize(draft)
            let info = try DER.sequence(try DER.parse(serializer.serializedBytes), identifier: .sequence) { nodes in
                guard let first = nodes.next() else { throw PKCS11KeyError("empty request") }
                while nodes.next() != nil {}
                return Array(first.encodedBytes)
            }
            let digest: [UInt8] = hash == .sha256 ? Array(SHA256.hash(data: info)) : Array(SHA384.hash(data: info))
            let plan = try PKCS11SigningPlan.make(signAlgo: algorithm == .sha256WithRSAEncryption ? SignatureAlgorithm.sha256WithRSA
                                                  : hash == .sha256 ? SignatureAlgorithm.ecdsaWithSHA256 : SignatureAlgorithm.ecdsaWithSHA384,
                                                  hashAlgo: nil, parameters: nil, key: key, digestLengths: [digest.count])
            let raw = try session.module.sign(session.handle, key: privateKey, mechanism: plan.mechanism, parameter: plan.parameter,
                                              data: plan.input(for: Data(digest)), maxLength: plan.maxSignatureLength)
            guard let signatureBytes = plan.encode(raw) else { throw PKCS11KeyError("the token returned an unreadable signature") }
            let signature = try Certificate.Signature(signatureAlgorithm: algorithm, signatureBytes: ASN1BitString(bytes: Array(signatureBytes)[...]))
            let csr = try CertificateSigningRequest(version: .v1, subject: name, publicKey: key.publicKey,
                                                    attributes: CertificateSigningRequest.Attributes(), signatureAlgorithm: algorithm,
                                                    signature: signature)
            guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
                throw PKCS11KeyError("the request's signature does not verify with the key's public key")
            }
            return try csr.serializeAsPEM().pemString
        }
    }

    /// Attaches the certificate of the key labelled `label` and its chain (PEM, any order;
    /// the end entity is recognised by its public key).
    public func importCertificates(label: String, pem: String) async throws -> [Certificate] {
        let documents = try PEMDocument.parseMultiple(pemString: pem).filter { $0.discriminator == "CERTIFICATE" }
        guard !documents.isEmpty else { throw PKCS11KeyError("no CERTIFICATE in the PEM input") }
        let certificates = try documents.map { try Certificate(pemDocument: $0) }
        return try await token.withSession { session in
            try session.importCertificates(certificates, for: label)
            let key = try session.describeKey(label)
            return try session.certificateChain(for: key)
        }
    }

    /// The raw signing rate of the module for one key, in this process, without the gateway:
    /// `threads` threads, each with its own logged-in session, `C_SignInit` + `C_Sign` over a
    /// SHA-256 digest (ECDSA, or PKCS#1 v1.5 over its DigestInfo) for `seconds`.
    public func rawSignRate(label: String, threads: Int, seconds: Double, pin: String) async throws -> (signatures: Int, seconds: Double) {
        let key = try await token.withSession { try $0.describeKey(label) }
        var isRSA = false
        if case .rsa = key.kind { isRSA = true }
        let plan = try PKCS11SigningPlan.make(signAlgo: isRSA ? SignatureAlgorithm.sha256WithRSA : SignatureAlgorithm.ecdsaWithSHA256,
                                              hashAlgo: nil, parameters: nil, key: key, digestLengths: [32])
        let module = token.module
        guard let slot = token.currentSlot else { throw PKCS11KeyError("the token is not present") }
        let input = plan.input(for: Data(SHA256.hash(data: Data("cscgate raw sign rate".utf8))))
        final class Tally: @unchecked Sendable {
            let lock = NSLock()
            var count = 0
            var failure: Error?
        }
        let tally = Tally()
        let group = DispatchGroup()
        let start = Date()
        for _ in 0..<max(1, threads) {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let session = try module.openSession(slot: slot)
                    defer { module.closeSession(session) }
                    try module.login(session, pin: pin)
                    let found = try module.findObjects(session, [
                        PKCS11Attribute(CKA_CLASS, ulong: CKO_PRIVATE_KEY), PKCS11Attribute(CKA_LABEL, string: label),
                    ], max: 1)
                    guard let handle = found.first else { throw PKCS11KeyError("no key '\(label)'") }
                    var n = 0
                    let end = start.addingTimeInterval(seconds)
                    while Date() < end {
                        _ = try module.sign(session, key: handle, mechanism: plan.mechanism, parameter: plan.parameter, data: input,
                                            maxLength: plan.maxSignatureLength)
                        n += 1
                    }
                    tally.lock.lock(); tally.count += n; tally.lock.unlock()
                } catch {
                    tally.lock.lock(); tally.failure = error; tally.lock.unlock()
                }
            }.start()
        }
        await withCheckedContinuation { c in group.notify(queue: .global()) { c.resume() } }
        if let failure = tally.failure { throw failure }
        return (tally.count, Date().timeIntervalSince(start))
    }

    /// The same measurement through a session pool like the gateway's (`threads` sessions,
    /// `threads` concurrent Swift tasks, each call hopping to a worker thread and back): the
    /// difference to `rawSignRate` is the pool's own cost.
    public func pooledSignRate(label: String, threads: Int, seconds: Double, settings: PKCS11Settings,
                               execution: PKCS11Token.Execution = .poolThread) async throws
        -> (signatures: Int, seconds: Double) {
        let pool = try PKCS11Token(modulePath: settings.modulePath, tokenLabel: settings.tokenLabel,
                                   slot: settings.slot.map { UInt($0) }, pin: try settings.pin.resolve(), sessions: threads)
        defer { pool.shutdown() }
        let key = try await pool.withSession { try $0.describeKey(label) }
        var isRSA = false
        if case .rsa = key.kind { isRSA = true }
        let plan = try PKCS11SigningPlan.make(signAlgo: isRSA ? SignatureAlgorithm.sha256WithRSA : SignatureAlgorithm.ecdsaWithSHA256,
                                              hashAlgo: nil, parameters: nil, key: key, digestLengths: [32])
        let input = plan.input(for: Data(SHA256.hash(data: Data("cscgate pooled sign rate".utf8))))
        let start = Date()
        let end = start.addingTimeInterval(seconds)
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<max(1, threads) {
                group.addTask {
                    var n = 0
                    while Date() < end {
                        _ = try await pool.withSession(execution) { s in
                            try s.module.sign(s.handle, key: try s.privateKey(label), mechanism: plan.mechanism,
                                              parameter: plan.parameter, data: input, maxLength: plan.maxSignatureLength)
                        }
                        n += 1
                    }
                    return n
                }
            }
            return try await group.reduce(0, +)
        }
        return (total, Date().timeIntervalSince(start))
    }

    /// `CN=Jane Doe,O=ACME,C=DE` (RFC 4514 order, most specific first; `\,` escapes a comma).
    public static func distinguishedName(_ text: String) throws -> DistinguishedName {
        var parts = [String](), current = "", escaped = false
        for ch in text {
            if escaped { current.append(ch); escaped = false; continue }
            if ch == "\\" { escaped = true; continue }
            if ch == "," { parts.append(current); current = ""; continue }
            current.append(ch)
        }
        parts.append(current)
        var rdns = [RelativeDistinguishedName]()
        for part in parts {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, !pair[1].isEmpty else { throw PKCS11KeyError("subject part '\(part)' is not TYPE=value") }
            let value = pair[1]
            let attribute: RelativeDistinguishedName.Attribute
            switch pair[0].uppercased() {
            case "CN": attribute = .init(type: .RDNAttributeType.commonName, utf8String: value)
            case "O": attribute = .init(type: .RDNAttributeType.organizationName, utf8String: value)
            case "OU": attribute = .init(type: .RDNAttributeType.organizationalUnitName, utf8String: value)
            case "L": attribute = .init(type: .RDNAttributeType.localityName, utf8String: value)
            case "ST": attribute = .init(type: .RDNAttributeType.stateOrProvinceName, utf8String: value)
            case "C":
                guard value.count == 2 else { throw PKCS11KeyError("C must be a two-letter country code") }
                attribute = try .init(type: .RDNAttributeType.countryName, printableString: value.uppercased())
            case "EMAIL", "EMAILADDRESS": attribute = try .init(type: .RDNAttributeType.emailAddress, ia5String: value)
            case "SERIALNUMBER": attribute = try .init(type: [2, 5, 4, 5], printableString: value)
            case "ORGANIZATIONIDENTIFIER": attribute = .init(type: [2, 5, 4, 97], utf8String: value)
            case "GN", "GIVENNAME": attribute = .init(type: [2, 5, 4, 42], utf8String: value)
            case "SN", "SURNAME": attribute = .init(type: [2, 5, 4, 4], utf8String: value)
            default: throw PKCS11KeyError("subject attribute '\(pair[0])' is not supported (CN, O, OU, L, ST, C, emailAddress, serialNumber, organizationIdentifier, GN, SN)")
            }
            rdns.append(RelativeDistinguishedName(attribute))
        }
        // RFC 4514 writes the most specific RDN first; the DER sequence goes from the root.
        return DistinguishedName(rdns.reversed())
    }
}
