import CSC
import Foundation
import GatewayCore
import GatewayServer
import HummingbirdTesting
import Synchronization
import Testing

// Invariant 3 (DESIGN.md): a SAD signs at most numSignatures, "whatever the upstream itself
// enforces" — also when the client extends it while spending it.

/// Opens once, for every waiter; waiting after it opened returns at once.
actor Gate {
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func open() {
        isOpen = true
        for w in waiters { w.resume() }
        waiters = []
    }
}

/// An in-process RSSP for one implicit SCAL 1 P-256 credential whose extendTransaction
/// waits at a gate, so a test can act while the gateway is inside the upstream call.
final class GatedBackend: SigningBackend {
    let name = "vendor-a"
    let extendEntered: AsyncStream<Void>
    private let enteredContinuation: AsyncStream<Void>.Continuation
    let extendGate = Gate()
    let signaturesMade = Mutex(0)
    /// While true, signHash fails as an upstream error would.
    let failSigning = Mutex(false)

    init() {
        (extendEntered, enteredContinuation) = AsyncStream.makeStream(of: Void.self)
    }

    func methods(_ context: OperationContext) async throws -> [CSCMethod] {
        [.info, .credentialsList, .credentialsInfo, .credentialsAuthorize, .credentialsExtendTransaction, .signaturesSignHash]
    }

    func credentialInfo(_ request: CredentialInfoRequest, _ context: OperationContext) async throws -> CredentialInfo {
        CredentialInfo(key: KeyInfo(status: .enabled, algorithms: [SignatureAlgorithm.ecdsaWithSHA256], length: 256,
                                    curve: "1.2.840.10045.3.1.7"),
                       cert: CertInfo(status: .valid), authMode: .implicit, scal: .one, multisign: 10)
    }

    func authorize(_ request: AuthorizeRequest, _ context: OperationContext) async throws -> AuthorizeResult {
        AuthorizeResult(sad: "upstream-sad-1", expiresIn: 3600)
    }

    func extendTransaction(_ request: ExtendTransactionRequest, _ context: OperationContext) async throws -> AuthorizeResult {
        enteredContinuation.yield()
        await extendGate.wait()
        return AuthorizeResult(sad: "upstream-sad-2", expiresIn: 3600)
    }

    func sendChallenge(_ request: ChallengeRequest, _ context: OperationContext) async throws -> ChallengeResult {
        ChallengeResult()
    }

    func signHash(_ request: SignHashRequest, _ context: OperationContext) async throws -> SignHashResult {
        if failSigning.withLock({ $0 }) { throw CSCError.upstreamFailed(name, "refused to sign") }
        signaturesMade.withLock { $0 += request.hashes.count }
        // A well-formed DER ECDSA-Sig-Value per hash.
        return SignHashResult(signatures: request.hashes.map { _ in Data([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]) })
    }

    func timestamp(_ request: TimestampRequest, _ context: OperationContext) async throws -> TimestampResult {
        throw CSCError.notImplemented("no TSA")
    }
}

@Suite("SAD budget through the front door")
struct SADBudgetTests {
    let backend = GatedBackend()
    let fixture: ServerFixture
    init() throws { fixture = try ServerFixture(backends: ["vendor-a": backend]) }

    private static let twoHashes = #"["\#(Data(repeating: 1, count: 32).base64EncodedString())","\#(Data(repeating: 2, count: 32).base64EncodedString())"]"#

    private static func signHash(_ sad: String) -> String {
        #"{"credentialID":"acme-ec","SAD":"\#(sad)","hash":\#(twoHashes),"signAlgo":"1.2.840.10045.4.3.2"}"#
    }

    @Test("a SAD for 2 signatures signs 2, then is refused")
    func budgetHolds() async throws {
        let backend = self.backend
        await backend.extendGate.open()
        try await fixture.test { client in
            let auth = "Bearer \(try await client.login().accessToken)"
            let authorized = try await client.post("/csc/v1/credentials/authorize",
                                                   json: #"{"credentialID":"acme-ec","numSignatures":2}"#, authorization: auth)
            #expect(authorized.status == .ok, "\(authorized.text)")
            let sad = try authorized.json().requiredString("SAD")
            #expect(!sad.contains("upstream-sad"))
            let first = try await client.post("/csc/v1/signatures/signHash", json: Self.signHash(sad), authorization: auth)
            #expect(first.status == .ok, "\(first.text)")
            let second = try await client.post("/csc/v1/signatures/signHash", json: Self.signHash(sad), authorization: auth)
            try expectCSCError(second, status: 400, error: "invalid_request")
            #expect(backend.signaturesMade.withLock { $0 } == 2)
        }
    }

    @Test("extending a SAD while it is being spent never yields more signatures than authorized")
    func extendWhileSpending() async throws {
        let backend = self.backend
        try await fixture.test { client in
            let auth = "Bearer \(try await client.login().accessToken)"
            let authorized = try await client.post("/csc/v1/credentials/authorize",
                                                   json: #"{"credentialID":"acme-ec","numSignatures":2}"#, authorization: auth)
            let sad = try authorized.json().requiredString("SAD")

            // The client asks to extend; the gateway is now waiting on the upstream...
            async let extended = client.post("/csc/v1/credentials/extendTransaction",
                                             json: #"{"credentialID":"acme-ec","SAD":"\#(sad)"}"#, authorization: auth)
            // (Bounded waits: a gateway that serialises the two requests must not hang the test.)
            let opener = Task {
                try? await Task.sleep(for: .seconds(3))
                await backend.extendGate.open()
            }
            defer { opener.cancel() }
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    var entered = backend.extendEntered.makeAsyncIterator()
                    _ = await entered.next()
                }
                group.addTask { try? await Task.sleep(for: .seconds(2)) }
                await group.next()
                group.cancelAll()
            }
            // ...while the same client spends the whole budget with the old SAD.
            let spent = try await client.post("/csc/v1/signatures/signHash", json: Self.signHash(sad), authorization: auth)
            await backend.extendGate.open()
            let extendedAnswer = try await extended

            if extendedAnswer.status == .ok {
                let newSAD = try extendedAnswer.json().requiredString("SAD")
                _ = try await client.post("/csc/v1/signatures/signHash", json: Self.signHash(newSAD), authorization: auth)
            }
            #expect(spent.status == .ok || extendedAnswer.status == .ok)
            #expect(backend.signaturesMade.withLock { $0 } <= 2,
                    "a SAD for 2 signatures produced \(backend.signaturesMade.withLock { $0 })")
        }
    }
}
