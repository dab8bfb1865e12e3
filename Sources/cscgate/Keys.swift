import ArgumentParser
import Foundation
import GatewayCore
import Ledger
import Upstreams

/// `cscgate keys`: the lifecycle of keys on a `kind: pkcs11` upstream's token.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keys and certificates on a local HSM (a kind: pkcs11 upstream).",
        subcommands: [Generate.self, CSR.self, ImportCert.self, List.self, PinHash.self, Unlock.self, Bench.self])

    struct HSMOptions: ParsableArguments {
        @Option(name: .long, help: "Path to gateway.yaml.")
        var config: String = "gateway.yaml"

        @Option(name: .long, help: "The pkcs11 upstream (default: the only one in gateway.yaml).")
        var upstream: String?

        func tool() throws -> PKCS11KeyTool { try open().tool }

        func open() throws -> (tool: PKCS11KeyTool, settings: PKCS11Settings) {
            let loaded: LoadedConfiguration
            do {
                loaded = try ConfigurationLoader.load(gatewayFile: config)
            } catch let error as ConfigurationError {
                throw ValidationError("configuration is invalid:\n\(error)")
            }
            let hsms = loaded.gateway.upstreams.filter(\.isPKCS11)
            let chosen: UpstreamConfiguration
            if let upstream {
                guard let u = hsms.first(where: { $0.name == upstream }) else {
                    throw ValidationError("no pkcs11 upstream named '\(upstream)' in \(config)")
                }
                chosen = u
            } else {
                guard hsms.count == 1 else {
                    throw ValidationError(hsms.isEmpty ? "\(config) has no kind: pkcs11 upstream"
                                                       : "\(config) has several pkcs11 upstreams; choose one with --upstream")
                }
                chosen = hsms[0]
            }
            do {
                return (try PKCS11KeyTool(settings: chosen.pkcs11!), chosen.pkcs11!)
            } catch {
                throw ValidationError("cannot open the token of upstream '\(chosen.name)': \(error)")
            }
        }
    }

    struct Generate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a key pair on the token (private key sensitive, never extractable).")
        @OptionGroup var hsm: HSMOptions
        @Option(name: .long, help: "The key's label on the token (the credential's label in gateway.yaml).")
        var label: String
        @Option(name: .long, help: "rsa-2048, rsa-3072, rsa-4096, ec-p256 or ec-p384.")
        var type: String = "ec-p256"

        func run() async throws {
            guard let keyType = PKCS11KeyType(rawValue: type) else {
                throw ValidationError("--type must be one of \(PKCS11KeyType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let tool = try hsm.tool()
            defer { tool.token.shutdown() }
            let key = try await tool.generate(keyType, label: label)
            print("generated \(key.typeName) key '\(key.label)'")
        }
    }

    struct CSR: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "csr", abstract: "Print a PKCS#10 certificate request signed by the key on the token (PEM).")
        @OptionGroup var hsm: HSMOptions
        @Option(name: .long, help: "The key's label on the token.")
        var label: String
        @Option(name: .long, help: "Subject, RFC 4514 style: 'CN=Jane Doe,O=ACME,C=DE'.")
        var subject: String
        @Option(name: .long, help: "Write the request to this file instead of standard output.")
        var out: String?

        func run() async throws {
            let tool = try hsm.tool()
            defer { tool.token.shutdown() }
            let pem = try await tool.certificateSigningRequest(label: label, subject: subject) + "\n"
            if let out {
                try Data(pem.utf8).write(to: URL(fileURLWithPath: out))
            } else {
                print(pem, terminator: "")
            }
        }
    }

    struct ImportCert: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import-cert", abstract: "Attach the key's certificate and its chain (PEM) to the key on the token.")
        @OptionGroup var hsm: HSMOptions
        @Option(name: .long, help: "The key's label on the token.")
        var label: String
        @Option(name: .long, help: "PEM file with the certificate (and optionally its chain).")
        var cert: String
        @Option(name: .long, help: "PEM file(s) with the issuing CA chain.")
        var chain: [String] = []

        func run() async throws {
            var pem = ""
            for path in [cert] + chain {
                guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                    throw ValidationError("cannot read \(path)")
                }
                pem += text + "\n"
            }
            let tool = try hsm.tool()
            defer { tool.token.shutdown() }
            let chain = try await tool.importCertificates(label: label, pem: pem)
            print("attached \(chain.count) certificate(s) to '\(label)': \(chain.map { $0.subject.description }.joined(separator: " <- "))")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the keys on the token and their certificates.")
        @OptionGroup var hsm: HSMOptions

        func run() async throws {
            let tool = try hsm.tool()
            defer { tool.token.shutdown() }
            let formatter = ISO8601DateFormatter()
            for k in try await tool.list() {
                var line = "\(k.label)\t\(k.type)"
                if let subject = k.subject {
                    line += "\t\(subject)\tissuer: \(k.issuer ?? "?")\tuntil \(k.notAfter.map(formatter.string(from:)) ?? "?")"
                    line += "\t(\(k.certificates) cert\(k.certificates == 1 ? "" : "s"))"
                } else {
                    line += "\tno certificate"
                }
                print(line)
            }
        }
    }

    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure the module's raw sign rate for one key in this process (no gateway, no HTTP).")
        @OptionGroup var hsm: HSMOptions
        @Option(name: .long, help: "The key's label on the token.")
        var label: String
        @Option(name: .long, help: "Threads, each with its own session.")
        var threads: Int = 1
        @Option(name: .long, help: "Duration in seconds.")
        var seconds: Double = 3
        @Flag(name: .long, help: "Go through a session pool like the gateway's (threads = sessions = concurrent tasks).")
        var pool = false
        @Flag(name: .long, help: "With --pool: run each call on the calling thread instead of a pool thread.")
        var inline = false

        func run() async throws {
            let (tool, settings) = try hsm.open()
            defer { tool.token.shutdown() }
            let (n, elapsed) = pool
                ? try await tool.pooledSignRate(label: label, threads: threads, seconds: seconds, settings: settings,
                                               execution: inline ? .inline : .poolThread)
                : try await tool.rawSignRate(label: label, threads: threads, seconds: seconds, pin: try settings.pin.resolve())
            print(String(format: "%d signatures in %.2f s: %.0f signatures/s (%d threads%@)", n, elapsed, Double(n) / elapsed,
                         threads, pool ? (inline ? ", session pool, inline" : ", session pool") : ""))
        }
    }

    struct PinHash: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pin-hash",
            abstract: "Read a credential PIN on standard input and print its stored form (pinHash in gateway.yaml).")

        func run() throws {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            guard var pin = String(data: data, encoding: .utf8) else { throw ValidationError("the PIN is not UTF-8") }
            while pin.hasSuffix("\n") || pin.hasSuffix("\r") { pin.removeLast() }
            guard pin.count >= 4 else { throw ValidationError("a PIN must have at least 4 characters") }
            print(try SecretHash.make(secret: pin).encoded)
        }
    }

    /// Failures are kept beside the ledger and survive restarts, so unlocking is this command.
    struct Unlock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Clear a local credential's PIN or OTP failures (a locked PIN or OTP works again).")
        @Option(name: .long, help: "Path to gateway.yaml.") var config: String = "gateway.yaml"
        @Option(name: .long, help: "The pkcs11 upstream (default: the only one in gateway.yaml).") var upstream: String?
        @Option(name: .long, help: "The credential's label in gateway.yaml.") var label: String
        @Option(name: .long, help: "pin, otp or both.") var factor: String = "both"

        func run() async throws {
            let loaded: LoadedConfiguration
            do { loaded = try ConfigurationLoader.load(gatewayFile: config) } catch let error as ConfigurationError {
                throw ValidationError("configuration is invalid:\n\(error)")
            }
            let hsms = loaded.gateway.upstreams.filter(\.isPKCS11)
            guard let chosen = upstream.map({ name in hsms.first { $0.name == name } }) ?? (hsms.count == 1 ? hsms.first : nil),
                  let settings = chosen.pkcs11 else {
                throw ValidationError(upstream.map { "no pkcs11 upstream named '\($0)' in \(config)" }
                                      ?? "choose the pkcs11 upstream with --upstream")
            }
            guard let credential = settings.credentials.first(where: { $0.label == label }) else {
                throw ValidationError("upstream '\(chosen.name)' has no credential labelled '\(label)'")
            }
            var factors = [String]()
            if factor == "pin" || factor == "both", credential.pinHash != nil { factors.append("pin") }
            if factor == "otp" || factor == "both", credential.otp != nil { factors.append("otp") }
            guard ["pin", "otp", "both"].contains(factor) else { throw ValidationError("--factor is pin, otp or both") }
            guard !factors.isEmpty else { throw ValidationError("credential '\(label)' has no \(factor == "both" ? "PIN or OTP" : factor)") }
            guard loaded.gateway.ledger.enabled else {
                throw ValidationError("the ledger is disabled: failures are counted in the gateway process, and a restart clears them")
            }
            // The attempts table only: a running gateway keeps the ledger's journal to itself.
            let ledgerSettings = loaded.gateway.ledger
            let attempts: any AuthorizationAttempts
            var postgres: (any LedgerLifecycle)?
            switch ledgerSettings.store {
            case .sqlite(let path):
                do { attempts = try SQLiteAuthorizationAttempts(path: path) } catch {
                    FileHandle.standardError.write(Data("cannot open the usage ledger at \(ledgerSettings.location): \(error)\n".utf8))
                    throw ExitCode(2)
                }
            case .postgres:
                let opened = try await openLedger(ledgerSettings)
                guard let a = opened.ledger as? any AuthorizationAttempts else {
                    throw ValidationError("this ledger keeps no PIN and OTP attempts")
                }
                attempts = a
                postgres = opened.ledger
            }
            for f in factors {
                let key = PKCS11Backend.attemptsKey(chosen.name, label, f)
                let before = try await attempts.failures(key)
                try await attempts.unlock(key)
                print("\(key): \(before) failure(s) cleared")
            }
            await postgres?.shutdown()
        }
    }
}
