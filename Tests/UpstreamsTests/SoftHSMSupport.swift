import CPKCS11
import Crypto
import CSC
import Foundation
import GatewayCore
import Logging
import Synchronization
import SwiftASN1
import Testing
import X509
@testable import Upstreams

/// A SoftHSM2 set up afresh for this test process: a temporary token directory with one
/// token per suite, so no suite sees another's keys. SoftHSM reads its configuration at the
/// first `C_Initialize`, so everything is prepared before any test touches the module.
enum SoftHSM {
    static let module = "/usr/lib/softhsm/libsofthsm2.so"
    static let pin = "4711-test-pin"
    static let suites = ["signing", "authorization", "recovery", "concurrency", "keys"]

    struct Environment: Sendable {
        let directory: URL
        let pinFile: String
    }

    static let environment: Result<Environment, SetupError> = {
        guard FileManager.default.fileExists(atPath: module) else {
            return .failure(SetupError(description: "SoftHSM2 is not installed (\(module)); run `make deps`"))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cscgate-softhsm-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("tokens"), withIntermediateDirectories: true)
            let conf = dir.appendingPathComponent("softhsm2.conf")
            try """
            directories.tokendir = \(dir.path)/tokens
            objectstore.backend = file
            log.level = ERROR
            slots.removable = false
            """.write(to: conf, atomically: true, encoding: .utf8)
            setenv("SOFTHSM2_CONF", conf.path, 1)
            let pinFile = dir.appendingPathComponent("user.pin").path
            try pin.write(toFile: pinFile, atomically: true, encoding: .utf8)
            for label in suites {
                try run("/usr/bin/softhsm2-util", ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "so-\(pin)"])
            }
            return .success(Environment(directory: dir, pinFile: pinFile))
        } catch {
            return .failure(SetupError(description: "cannot prepare SoftHSM2: \(error)"))
        }
    }()

    struct SetupError: Error, CustomStringConvertible { let description: String }

    static func env() throws -> Environment { try environment.get() }

    static func settings(token: String, sessions: Int = 4, credentials: [LocalCredentialSettings]) throws -> PKCS11Settings {
        PKCS11Settings(modulePath: module, tokenLabel: token, slot: nil, pin: .file(try env().pinFile), sessions: sessions,
                       sadLifetime: 300, credentials: credentials)
    }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String], stdin: Data? = nil) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        if let stdin {
            let input = Pipe()
            p.standardInput = input
            try p.run()
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
        } else {
            try p.run()
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw SetupError(description: "\(tool) \(arguments.joined(separator: " ")) failed: \(String(decoding: errors, as: UTF8.self))")
        }
        return String(decoding: output, as: UTF8.self)
    }
}

/// A software CA that certifies HSM keys for the tests.
struct TestCA {
    let key = P256.Signing.PrivateKey()
    let name: DistinguishedName
    let certificate: Certificate

    init(_ commonName: String = "cscgate test CA") throws {
        name = try DistinguishedName { OrganizationName("cscgate tests"); CommonName(commonName) }
        let now = Date()
        certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now - 3600,
            notValidAfter: now + 86400 * 30, issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            }, issuerPrivateKey: .init(key))
    }

    func issue(for publicKey: Certificate.PublicKey, commonName: String, validFor seconds: TimeInterval = 86400 * 7,
               from start: Date = Date() - 60) throws -> Certificate {
        try Certificate(
            version: .v3, serialNumber: .init(), publicKey: publicKey, notValidBefore: start, notValidAfter: start + seconds,
            issuer: name, subject: try DistinguishedName { OrganizationName("cscgate tests"); CommonName(commonName) },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, nonRepudiation: true))
            }, issuerPrivateKey: .init(key))
    }
}

/// A mutable clock for SAD expiry and TOTP windows.
final class TestClock: Sendable {
    private let offset = Mutex<TimeInterval>(0)
    func advance(_ seconds: TimeInterval) { offset.withLock { $0 += seconds } }
    var now: @Sendable () -> Date { { [self] in Date() + self.offset.withLock { $0 } } }
}

let testContext = OperationContext(requestID: "test", logger: Logger(label: "test"))

/// Makes (once per token) the keys a suite needs, certified by `ca`.
func prepareKeys(_ backend: PKCS11Backend, _ keys: [(String, PKCS11KeyType)], ca: TestCA) async throws {
    let tool = PKCS11KeyTool(token: backend.token)
    for (label, type) in keys {
        let key = try await tool.generate(type, label: label)
        let cert = try ca.issue(for: key.publicKey, commonName: "signer \(label)")
        let pem = try cert.serializeAsPEM().pemString + "\n" + ca.certificate.serializeAsPEM().pemString
        _ = try await tool.importCertificates(label: label, pem: pem)
    }
}

func expectCSCError(_ error: String, _ descriptionContains: String? = nil, sourceLocation: SourceLocation = #_sourceLocation,
                    _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected CSC error \(error), got success", sourceLocation: sourceLocation)
    } catch let e as CSCError {
        #expect(e.error == error, "\(e)", sourceLocation: sourceLocation)
        if let d = descriptionContains {
            #expect(e.errorDescription.contains(d), "\(e)", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("expected CSC error \(error), got \(error)", sourceLocation: sourceLocation)
    }
}

func sha(_ hash: HashAlgorithm, _ text: String) -> Data {
    let data = Data(text.utf8)
    switch hash {
    case .sha384: return Data(SHA384.hash(data: data))
    case .sha512: return Data(SHA512.hash(data: data))
    default: return Data(SHA256.hash(data: data))
    }
}
