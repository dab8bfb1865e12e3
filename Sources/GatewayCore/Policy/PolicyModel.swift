import CSC
import Foundation

/// `policies/<name>.yaml`: rules an operator attaches to tenants, clients or credentials, and
/// the test cases that pin down what they mean.
public struct PolicyDocument: Sendable {
    public var name: String
    public var file: String
    /// What this policy says when none of its allow or deny rules matched.
    public var defaultEffect: PolicyDefault
    public var rules: [PolicyRule]
    public var tests: [PolicyTestCase]
}

public enum PolicyDefault: String, Sendable {
    case allow, deny
}

/// One rule: every condition must hold for it to match; then it allows, denies or limits.
public struct PolicyRule: Sendable {
    public var id: String
    public var line: Int?
    public var conditions: [PolicyCondition]
    public var effect: PolicyEffect
}

public enum PolicyEffect: Sendable {
    case allow
    /// The reason is what the client reads in `error_description`.
    case deny(reason: String)
    case limit(LimitSpec)

    var name: String {
        switch self {
        case .allow: "allow"
        case .deny: "deny"
        case .limit: "limit"
        }
    }
}

/// What a `limit` rule counts, for whom, and how much it lets through.
public struct LimitSpec: Sendable, Equatable {
    public enum Scope: String, Sendable, CaseIterable {
        case tenant, client, credential, upstream
    }

    public enum Unit: String, Sendable, CaseIterable {
        /// Hashes signed: a signHash of 20 hashes costs 20.
        case signatures
        /// Operations: each call costs 1.
        case requests
    }

    public enum Kind: Sendable, Equatable {
        /// GCRA: `rate` units per `period` seconds, at most `burst` at once.
        case rate(rate: Int, period: Double, burst: Int, unit: Unit)
        /// Operations in flight at once, counted in this instance.
        case concurrency(Int)
    }

    /// `<policy>/<rule>`: unique gateway-wide, so it names the counter and the refusal.
    public var name: String
    public var scope: Scope
    public var kind: Kind

    public var summary: String {
        switch kind {
        case let .rate(rate, period, burst, unit):
            "\(rate) \(unit.rawValue) per \(Self.describe(period)), burst \(burst), per \(scope.rawValue)"
        case .concurrency(let n):
            "\(n) in flight per \(scope.rawValue)"
        }
    }

    static func describe(_ seconds: Double) -> String {
        let s = Int(seconds)
        if Double(s) != seconds { return "\(seconds) s" }
        if s % 86400 == 0 { return s == 86400 ? "day" : "\(s / 86400) days" }
        if s % 3600 == 0 { return s == 3600 ? "hour" : "\(s / 3600) h" }
        if s % 60 == 0 { return s == 60 ? "minute" : "\(s / 60) min" }
        return s == 1 ? "second" : "\(s) s"
    }
}

/// A test case carried by a policy file: an operation, and the decision the file must give.
public struct PolicyTestCase: Sendable {
    public var name: String
    public var line: Int?
    public var facts: OperationFacts
    public var expectAllow: Bool
    /// When set, the deny reason must contain this text.
    public var expectReason: String?
    /// When set, exactly these limits (rule ids or full names) must apply.
    public var expectLimits: [String]?
}

/// One test case of a policy file against that file alone.
extension PolicyDocument {
    /// What is wrong with the decision this file alone gives for `test`; empty when it passes.
    public func check(_ test: PolicyTestCase) -> [String] {
        let doc = self
        let decision = PolicyIndex.decide(test.facts, documents: [doc])
        var problems = [String]()
        let got = decision.isAllowed ? "allow" : "deny"
        if decision.isAllowed != test.expectAllow {
            problems.append("expected \(test.expectAllow ? "allow" : "deny"), got \(got)"
                            + (decision.denial.map { " by \($0.rule): \($0.reason)" } ?? decision.allowedBy.map { " by \($0)" } ?? ""))
        }
        if let reason = test.expectReason, !(decision.denial?.reason.contains(reason) ?? false) {
            problems.append("expected a denial reason containing \"\(reason)\", got \"\(decision.denial?.reason ?? "(none)")\"")
        }
        if let expected = test.expectLimits {
            let names = decision.limits.map(\.name)
            let wanted = expected.map { $0.contains("/") ? $0 : "\(doc.name)/\($0)" }
            if Set(names) != Set(wanted) {
                problems.append("expected limits [\(wanted.sorted().joined(separator: ", "))], got [\(names.sorted().joined(separator: ", "))]")
            }
        }
        return problems
    }
}
