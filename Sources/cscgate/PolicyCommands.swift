import ArgumentParser
import Foundation
import GatewayCore
import SwiftASN1

struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Policy files: run their tests, explain a decision.",
        subcommands: [Test.self, Explain.self, PolicyBench.self])

    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the test cases of every policy file; fail on any file error or wrong decision.")

        @Option(help: "The policies directory.") var policies: String = "policies"
        @Argument(help: "Only these policy names (default: all).") var names: [String] = []

        func run() throws {
            let (documents, issues) = ConfigurationLoader.loadPolicies(directory: policies)
            for issue in issues { print(issue) }
            var failures = issues.count, passed = 0
            for doc in documents.sorted(by: { $0.name < $1.name }) where names.isEmpty || names.contains(doc.name) {
                if doc.tests.isEmpty { print("\(doc.file): no tests") }
                for test in doc.tests {
                    let problems = doc.check(test)
                    let place = "\(doc.file)\(test.line.map { ":\($0)" } ?? "")"
                    if problems.isEmpty {
                        passed += 1
                        print("ok    \(doc.name): \(test.name)")
                    } else {
                        failures += 1
                        print("FAIL  \(place): \(test.name): \(problems.joined(separator: "; "))")
                    }
                }
            }
            print("\(passed) passed, \(failures) failed")
            if failures > 0 { throw ExitCode(1) }
        }
    }

    struct Explain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show every rule that applies to a described operation, whether it matched and why, and the decision.")

        @OptionGroup var options: ConfigOption
        @Option(help: "Tenant id.") var tenant: String
        @Option(help: "Client id (default: the tenant's first client).") var client: String?
        @Option(help: "CSC operation, e.g. signatures/signHash.") var operation: String = "signatures/signHash"
        @Option(help: "The tenant's credential id.") var credential: String?
        @Option(help: "signAlgo OID.") var signAlgo: String?
        @Option(help: "hashAlgo OID.") var hashAlgo: String?
        @Option(help: "Number of hashes.") var hashes: Int?
        @Option(help: "numSignatures.") var numSignatures: Int?
        @Option(help: "SCAL of the credential (1 or 2).") var scal: String?
        @Option(help: "Signature qualifier of the credential.") var qualifier: String?
        @Option(help: "Source address of the client.") var source: String?
        @Option(help: "Time, ISO 8601 (default: now).") var time: String?
        @Option(help: "Signer certificate, PEM or DER file.") var certificate: String?

        func run() throws {
            let loaded: LoadedConfiguration
            do { loaded = try ConfigurationLoader.load(gatewayFile: options.config) } catch let error as ConfigurationError {
                for issue in error.issues { print(issue) }
                throw ExitCode(1)
            }
            guard let t = loaded.tenants.first(where: { $0.id == tenant }) else {
                throw ValidationError("tenant '\(tenant)' is not defined")
            }
            let route = try credential.map { id in
                guard let r = t.credentials.first(where: { $0.id == id }) else {
                    throw ValidationError("tenant '\(tenant)' has no credential '\(id)'")
                }
                return r
            }
            var facts = OperationFacts(
                tenant: tenant, client: client ?? t.clients.first?.id ?? "-", operation: operation, credential: route?.id,
                credentialLabels: route?.labels ?? [:], upstream: route?.upstream, signAlgorithm: signAlgo,
                hashAlgorithm: hashAlgo, hashes: hashes, numSignatures: numSignatures, scal: scal, signatureQualifier: qualifier)
            if let time {
                guard let d = ISO8601DateFormatter().date(from: time) else { throw ValidationError("--time must be ISO 8601") }
                facts.time = d
            }
            if let source {
                guard let a = IPAddress(source) else { throw ValidationError("--source is not an IP address") }
                facts.source = a
            }
            if let certificate {
                guard let data = FileManager.default.contents(atPath: certificate) else {
                    throw ValidationError("cannot read \(certificate)")
                }
                let der: [UInt8]
                if let text = String(data: data, encoding: .utf8), text.contains("-----BEGIN"),
                   let pem = try? PEMDocument(pemString: text) {
                    der = pem.derBytes
                } else {
                    der = Array(data)
                }
                guard let parsed = CertificateFacts.parse(der: der) else { throw ValidationError("\(certificate) is not a certificate") }
                facts.certificate = parsed
            }
            let index = PolicyIndex(documents: loaded.policies, tenants: loaded.tenants)
            for line in index.explain(facts) { print(line) }
        }
    }
}

