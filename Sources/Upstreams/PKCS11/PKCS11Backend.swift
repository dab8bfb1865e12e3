import CPKCS11
import Crypto
import CSC
import Foundation
import GatewayCore
import Logging
import SwiftASN1
import Synchronization
import X509

/// Credentials whose keys live on a local HSM, reached through PKCS#11: here the gateway is
/// the RSSP. It describes each key and its certificate chain from the token, authorizes
/// signers with the credential's own factors (PIN, TOTP) and signs on the token. SAD sealing,
/// budgets, expiry and SCAL 2 hash binding are the gateway's, as for every upstream.
public final class PKCS11Backend: SigningBackend {
    public let name: String
    public let token: PKCS11Token
    let settings: PKCS11Settings
    let credentials: [String: LocalCredential]
    let sads: LocalSADs
    let keys: KeyCache
    let now: @Sendable () -> Date

    struct LocalCredential: Sendable {
        let settings: LocalCredentialSettings
        let pin: PINCheck?
        let otp: TOTPCheck?
    }

    /// Resolves the token PIN and the OTP secrets, loads the module and finds the token.
    /// `attempts` keeps PIN and OTP failures (the ledger's database, so they outlive a restart).
    /// `sadKey` authenticates this backend's own SADs; instances sharing sessions must share it
    /// (`cscgate serve` derives it from the SAD key).
    public init(name: String, settings: PKCS11Settings, attempts: any AuthorizationAttempts = AttemptsInMemory(),
                sadKey: SymmetricKey = SymmetricKey(size: .bits256), now: @escaping @Sendable () -> Date = Date.init) throws {
        self.name = name
        self.settings = settings
        self.now = now
        let pin = try settings.pin.resolve()
        var credentials = [String: LocalCredential]()
        for c in settings.credentials {
            var otp: TOTPCheck?
            if let o = c.otp {
                guard let secret = TOTPCheck.base32Decode(try o.secret.resolve()), secret.count >= 10 else {
                    throw PKCS11KeyError("upstream '\(name)', credential '\(c.label)': the OTP secret (\(o.secret)) is not base32 of at least 10 bytes")
                }
                otp = TOTPCheck(secret: secret, settings: o, key: Self.attemptsKey(name, c.label, "otp"), attempts: attempts,
                                now: now)
            }
            let pinCheck = c.pinHash.map {
                PINCheck(hash: $0, maxFailures: c.maxPinFailures, key: Self.attemptsKey(name, c.label, "pin"), attempts: attempts)
            }
            credentials[c.label] = LocalCredential(settings: c, pin: pinCheck, otp: otp)
        }
        self.credentials = credentials
        self.token = try PKCS11Token(modulePath: settings.modulePath, tokenLabel: settings.tokenLabel,
                                     slot: settings.slot.map { CK_SLOT_ID($0) }, pin: pin, sessions: settings.sessions)
        self.sads = LocalSADs(key: sadKey, now: now)
        self.keys = KeyCache()
    }

    public func shutdown() { token.shutdown() }

    /// Where a credential's PIN or OTP attempts are counted: `<upstream>/<label>/pin|otp`.
    public static func attemptsKey(_ upstream: String, _ label: String, _ factor: String) -> String {
        "\(upstream)/\(label)/\(factor)"
    }

    /// Logs in once (a wrong token PIN fails here, at start, not at the first signature) and
    /// reads every configured key; returns a line for each credential whose key or
    /// certificate is missing on the token.
    public func open(_ context: OperationContext) async throws -> [String] {
        do {
            try await token.withSession { _ in }
        } catch let error as PKCS11Error {
            throw PKCS11LoadError(description: "cannot log in to token '\(settings.tokenLabel ?? "slot \(settings.slot ?? 0)")': \(error.name)")
        }
        var problems = [String]()
        for c in settings.credentials {
            do {
                let m = try await keyMaterial(c.label, context, refresh: true)
                if m.chain.isEmpty { problems.append("credential '\(c.label)': no certificate on the token (cscgate keys import-cert)") }
            } catch {
                problems.append("credential '\(c.label)': \((error as? CSCError)?.errorDescription ?? "\(error)")")
            }
        }
        return problems
    }

    // MARK: SigningBackend

    public func methods(_ context: OperationContext) async throws -> [CSCMethod] {
        [.info, .credentialsList, .credentialsInfo, .credentialsAuthorize, .credentialsExtendTransaction, .signaturesSignHash]
    }

    public func credentialInfo(_ request: CredentialInfoRequest, _ context: OperationContext) async throws -> CredentialInfo {
        let credential = try local(request.credentialID)
        let material = try await keyMaterial(credential.settings.label, context, refresh: true)
        let key = material.key
        var algorithms: [String]
        switch key.kind {
        case .rsa:
            algorithms = [SignatureAlgorithm.rsaEncryption, SignatureAlgorithm.sha256WithRSA, SignatureAlgorithm.sha384WithRSA,
                          SignatureAlgorithm.sha512WithRSA, SignatureAlgorithm.rsassaPSS]
        case .ec:
            algorithms = [SignatureAlgorithm.ecdsaWithSHA256, SignatureAlgorithm.ecdsaWithSHA384, SignatureAlgorithm.ecdsaWithSHA512,
                          SignatureAlgorithm.ecdsaPlainSHA256, SignatureAlgorithm.ecdsaPlainSHA384, SignatureAlgorithm.ecdsaPlainSHA512]
        }
        algorithms.sort()
        var curve: String?
        if case .ec(let c) = key.kind { curve = c.rawValue }
        var cert = CertInfo()
        if let endEntity = material.chain.first {
            cert.status = material.certificateValid(at: now()) ? .valid : .expired
            if request.certificates != .none {
                let all = material.chain.map { Data($0.derBytes).base64EncodedString() }
                cert.certificates = request.certificates == .chain ? all : [all[0]]
            }
            if request.certInfo {
                cert.subjectDN = endEntity.subject.description
                cert.issuerDN = endEntity.issuer.description
                cert.serialNumber = endEntity.serialNumber.bytes.map { String(format: "%02X", $0) }.joined()
                cert.validFrom = Self.generalizedTime(endEntity.notValidBefore)
                cert.validTo = Self.generalizedTime(endEntity.notValidAfter)
            }
        }
        let s = credential.settings
        var factors = [AuthFactor]()
        if s.authMode == .explicit {
            if credential.pin != nil {
                factors.append(AuthFactor(kind: .pin, presence: "true", format: s.pinFormat, label: "PIN",
                                          description: "The PIN of this signing credential"))
            }
            if let o = s.otp {
                factors.append(AuthFactor(kind: .otp, presence: "true", format: "N", label: "OTP",
                                          description: "A \(o.digits)-digit code from the signer's authenticator app",
                                          otpType: "offline", provider: "totp"))
            }
        }
        return CredentialInfo(
            description: s.description, signatureQualifier: s.signatureQualifier,
            // A key without a certificate cannot make a signature anyone can verify.
            key: KeyInfo(status: material.chain.isEmpty ? .disabled : .enabled, algorithms: algorithms, length: key.bits, curve: curve),
            cert: cert, authMode: s.authMode, authFactors: factors, scal: s.scal, multisign: s.multisign, lang: request.lang)
    }

    public func authorize(_ request: AuthorizeRequest, _ context: OperationContext) async throws -> AuthorizeResult {
        let credential = try local(request.credentialID)
        let material = try await keyMaterial(credential.settings.label, context)
        if let endEntity = material.chain.first, !material.certificateValid(at: now()) {
            throw CSCError.invalidRequest("Signing certificate '\(endEntity.subject)' is expired")
        }
        if credential.settings.authMode == .explicit {
            // The PIN first: a wrong PIN must not burn the signer's OTP.
            try await credential.pin?.verify(request.pin, context)
            try await credential.otp?.verify(request.otp, context)
        }
        let issued = sads.issue(label: credential.settings.label, lifetime: settings.sadLifetime)
        return AuthorizeResult(sad: issued.sad, expiresIn: issued.expiresIn)
    }

    /// A new SAD for what is left of an authorization; the gateway carries the budget and hashes.
    public func extendTransaction(_ request: ExtendTransactionRequest, _ context: OperationContext) async throws -> AuthorizeResult {
        let credential = try local(request.credentialID)
        let expires = try sads.check(request.sad, label: credential.settings.label)
        let issued = sads.issue(label: credential.settings.label, lifetime: settings.sadLifetime, expires: expires)
        return AuthorizeResult(sad: issued.sad, expiresIn: issued.expiresIn)
    }

    public func sendChallenge(_ request: ChallengeRequest, _ context: OperationContext) async throws -> ChallengeResult {
        throw CSCError.invalidRequest("The credential identified by credentialID has no online OTP")
    }

    public func signHash(_ request: SignHashRequest, _ context: OperationContext) async throws -> SignHashResult {
        let credential = try local(request.credentialID)
        let label = credential.settings.label
        _ = try sads.check(request.sad, label: label)
        guard !request.hashes.isEmpty else { throw CSCError.invalidRequest("Empty hash array") }
        let material = try await keyMaterial(label, context)
        let plan = try PKCS11SigningPlan.make(signAlgo: request.signAlgorithm, hashAlgo: request.hashAlgorithm,
                                              parameters: request.signAlgorithmParameters, key: material.key,
                                              digestLengths: request.hashes.map(\.count))
        let inputs = request.hashes.map { plan.input(for: $0) }
        let raw: [[UInt8]] = try await onToken(context, "sign", Self.execution(material.key.kind, settings)) { session in
            let key = try session.privateKey(label)
            return try inputs.map {
                try session.module.sign(session.handle, key: key, mechanism: plan.mechanism, parameter: plan.parameter,
                                        data: $0, maxLength: plan.maxSignatureLength)
            }
        }
        return SignHashResult(signatures: try raw.map {
            guard let s = plan.encode($0) else { throw CSCError.upstreamFailed(name, "the HSM returned a signature that cannot be read") }
            return s
        })
    }

    /// Where a signature is made: on a pool thread, unless the operator says this module's
    /// ECDSA takes microseconds (`inlineECDSA`), where the hop would cost more than the call.
    static func execution(_ kind: PKCS11KeyDescription.Kind, _ settings: PKCS11Settings) -> PKCS11Token.Execution {
        if case .ec = kind, settings.inlineECDSA { return .inline }
        return .poolThread
    }

    public func timestamp(_ request: TimestampRequest, _ context: OperationContext) async throws -> TimestampResult {
        throw CSCError.notImplemented("Upstream '\(name)' (a local HSM) does not serve signatures/timestamp")
    }

    // MARK: Keys

    private func local(_ label: String) throws -> LocalCredential {
        guard let c = credentials[label] else {
            throw CSCError.upstreamFailed(name, "has no credential '\(label)' configured (gateway.yaml, upstream credentials)")
        }
        return c
    }

    struct KeyMaterial: Sendable {
        let key: PKCS11KeyDescription
        let chain: [Certificate]
        let fetched: Date

        func certificateValid(at date: Date) -> Bool {
            guard let c = chain.first else { return false }
            return c.notValidBefore <= date && date <= c.notValidAfter
        }
    }

    /// The key's description and certificate chain, read from the token and kept for a minute
    /// (a certificate imported meanwhile shows up after that, or at once on `credentials/info`).
    func keyMaterial(_ label: String, _ context: OperationContext, refresh: Bool = false) async throws -> KeyMaterial {
        if !refresh, let m = keys.get(label), now().timeIntervalSince(m.fetched) < 60 { return m }
        let fetchedAt = now()
        let material: KeyMaterial = try await onToken(context, "describe key") { session in
            let key = try session.describeKey(label)
            return KeyMaterial(key: key, chain: try session.certificateChain(for: key), fetched: fetchedAt)
        }
        keys.put(label, material)
        return material
    }

    /// A call on the token with its failures as CSC errors that name this upstream; the
    /// PKCS#11 detail goes to the log.
    func onToken<T: Sendable>(_ context: OperationContext, _ what: String, _ execution: PKCS11Token.Execution = .poolThread,
                              _ body: @escaping @Sendable (PKCS11Session) throws -> T) async throws -> T {
        do {
            return try await token.withSession(execution, body)
        } catch let error as PKCS11Error {
            context.logger.warning("HSM call failed", metadata: [
                "upstream": .string(name), "operation": .string(what), "pkcs11": .string(error.description),
            ])
            if error.needsReinitialisation || error.rv == CKR_SESSION_HANDLE_INVALID || error.rv == CKR_SESSION_COUNT {
                throw CSCError.upstreamUnavailable(name, "the HSM token is not reachable (\(error.name))")
            }
            if error.rv == CKR_PIN_INCORRECT || error.rv == CKR_PIN_LOCKED || error.rv == CKR_PIN_EXPIRED {
                throw CSCError.upstreamFailed(name, "the HSM refused the gateway's token PIN (\(error.name))")
            }
            throw CSCError.upstreamFailed(name, "the HSM could not \(what) (\(error.name))")
        } catch let error as PKCS11KeyError {
            context.logger.warning("HSM key problem", metadata: ["upstream": .string(name), "detail": .string(error.description)])
            throw CSCError.upstreamFailed(name, error.description)
        } catch let error as CSCError {
            throw error
        } catch let error as PKCS11LoadError {
            throw CSCError.upstreamUnavailable(name, error.description)
        } catch {
            context.logger.warning("HSM call failed", metadata: ["upstream": .string(name), "error": .string("\(error)")])
            throw CSCError.upstreamFailed(name, "the HSM could not \(what)")
        }
    }

    static func generalizedTime(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMddHHmmss'Z'"
        return f.string(from: date)
    }
}

/// Key descriptions by label.
final class KeyCache: Sendable {
    private let map = Mutex<[String: PKCS11Backend.KeyMaterial]>([:])
    func get(_ label: String) -> PKCS11Backend.KeyMaterial? { map.withLock { $0[label] } }
    func put(_ label: String, _ m: PKCS11Backend.KeyMaterial) { map.withLock { $0[label] = m } }
}

extension Certificate {
    var derBytes: [UInt8] {
        var serializer = DER.Serializer()
        try? serializer.serialize(self)
        return serializer.serializedBytes
    }
}
