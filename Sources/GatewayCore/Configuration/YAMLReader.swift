import Foundation
import Yams

/// One problem in a configuration file, located for the operator who has to fix it.
public struct ConfigurationIssue: Sendable, Equatable, CustomStringConvertible {
    public let file: String
    public let line: Int?
    public let message: String

    public init(file: String, line: Int?, message: String) {
        self.file = file; self.line = line; self.message = message
    }

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

/// Thrown when any file fails validation; the gateway keeps (or never starts) with the old state.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let issues: [ConfigurationIssue]
    public init(_ issues: [ConfigurationIssue]) { self.issues = issues }
    public var description: String { issues.map(\.description).joined(separator: "\n") }
}

/// Collects issues while a file is read, so one `check` run reports every problem at once.
final class IssueLog {
    let file: String
    private(set) var issues: [ConfigurationIssue] = []
    init(file: String) { self.file = file }

    func add(_ message: String, at node: Node?) {
        issues.append(ConfigurationIssue(file: file, line: node?.mark?.line, message: message))
    }
}

/// A YAML mapping read key by key; wrong types and unknown keys become issues, not crashes.
struct YAMLMap {
    let node: Node
    let path: String
    let log: IssueLog
    let pairs: [(String, Node)]

    init?(_ node: Node, path: String, log: IssueLog) {
        guard case .mapping(let mapping) = node else {
            log.add("\(path.isEmpty ? "document" : path) must be a mapping", at: node)
            return nil
        }
        self.node = node; self.path = path; self.log = log
        self.pairs = mapping.compactMap { k, v in k.string.map { ($0, v) } }
    }

    static func document(_ text: String, log: IssueLog) -> YAMLMap? {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                log.add("file is empty", at: nil)
                return nil
            }
            return YAMLMap(node, path: "", log: log)
        } catch let error as YamlError {
            if case .duplicatedKeysInMapping(let keys, let context) = error {
                log.add("key \(keys.sorted().map { "'\($0)'" }.joined(separator: ", ")) is given twice", at: nil)
                log.patchLastLine(context.mark.line)
                return nil
            }
            log.add("not valid YAML: \(Self.describe(error))", at: nil)
            if case .parser(_, _, let mark, _) = error { log.patchLastLine(mark.line) }
            if case .scanner(_, _, let mark, _) = error { log.patchLastLine(mark.line) }
            return nil
        } catch {
            log.add("not valid YAML", at: nil)
            return nil
        }
    }

    private static func describe(_ error: YamlError) -> String {
        switch error {
        case .parser(_, let problem, _, _), .scanner(_, let problem, _, _): return problem
        default: return "\(error)"
        }
    }

    func key(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    subscript(name: String) -> Node? { pairs.first { $0.0 == name }?.1 }

    func rejectUnknownKeys(_ allowed: Set<String>) {
        for (name, value) in pairs where !allowed.contains(name) {
            log.add("unknown key '\(key(name))' (expected one of: \(allowed.sorted().joined(separator: ", ")))", at: value)
        }
    }

    func string(_ name: String, required: Bool = false) -> String? {
        guard let value = self[name] else {
            if required { log.add("missing required key '\(key(name))'", at: node) }
            return nil
        }
        guard case .scalar(let s) = value, !s.string.isEmpty else {
            log.add("'\(key(name))' must be a non-empty string", at: value)
            return nil
        }
        return s.string
    }

    func int(_ name: String, default def: Int, range: ClosedRange<Int>) -> Int {
        guard let value = self[name] else { return def }
        guard let i = value.int, range.contains(i) else {
            log.add("'\(key(name))' must be an integer between \(range.lowerBound) and \(range.upperBound)", at: value)
            return def
        }
        return i
    }

    func double(_ name: String, default def: Double, range: ClosedRange<Double>) -> Double {
        guard let value = self[name] else { return def }
        guard let d = value.float ?? value.int.map(Double.init), range.contains(d) else {
            log.add("'\(key(name))' must be a number between \(range.lowerBound) and \(range.upperBound)", at: value)
            return def
        }
        return d
    }

    func bool(_ name: String, default def: Bool) -> Bool {
        guard let value = self[name] else { return def }
        guard let b = value.bool else {
            log.add("'\(key(name))' must be true or false", at: value)
            return def
        }
        return b
    }

    func map(_ name: String, required: Bool = false) -> YAMLMap? {
        guard let value = self[name] else {
            if required { log.add("missing required key '\(key(name))'", at: node) }
            return nil
        }
        return YAMLMap(value, path: key(name), log: log)
    }

    func list(_ name: String) -> [(Int, Node)] {
        guard let value = self[name] else { return [] }
        guard case .sequence(let seq) = value else {
            log.add("'\(key(name))' must be a list", at: value)
            return []
        }
        return Array(seq.enumerated())
    }

    func mapList(_ name: String) -> [YAMLMap] {
        list(name).compactMap { i, node in YAMLMap(node, path: "\(key(name))[\(i)]", log: log) }
    }

    func stringList(_ name: String) -> [String] {
        list(name).compactMap { i, node in
            guard case .scalar(let s) = node else {
                log.add("'\(key(name))[\(i)]' must be a string", at: node)
                return nil
            }
            return s.string
        }
    }

    func line(of name: String) -> Int? { self[name]?.mark?.line ?? node.mark?.line }
}

extension IssueLog {
    /// YAML syntax errors carry their position in the error, not in a node.
    func patchLastLine(_ line: Int) {
        guard let last = issues.popLast() else { return }
        issues.append(ConfigurationIssue(file: last.file, line: line, message: last.message))
    }
}
