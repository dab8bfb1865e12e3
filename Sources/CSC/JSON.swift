import Foundation

/// A JSON value decoded without a schema, so that every field can be checked by hand and a
/// wrong type produces the CSC error text a client expects instead of a decoder dump.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public static func parse(_ data: Data) throws -> JSONValue {
        do {
            return try JSONParser.parse(data)
        } catch {
            throw CSCError.invalidRequest("The request body is not valid JSON")
        }
    }

    /// Serialises with sorted keys, so equal values give equal bytes (tests and sealing rely on it).
    public func serialized() -> Data {
        var out = [UInt8]()
        out.reserveCapacity(256)
        write(into: &out)
        return Data(out)
    }

    private func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: Array("null".utf8))
        case .bool(let b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .number(let n):
            if n.rounded() == n, abs(n) < 9.0e15 {
                out.append(contentsOf: Array(String(Int64(n)).utf8))
            } else {
                out.append(contentsOf: Array(String(n).utf8))
            }
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            out.append(UInt8(ascii: "{"))
            for (i, key) in fields.keys.sorted().enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                fields[key]?.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [92, UInt8(ascii: "u"), 48, 48, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

extension JSONValue: Codable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n): try c.encode(n)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }
}

/// A JSON object read field by field. Accessors throw `CSCError.invalidRequest` worded as the
/// CSC specification words them ("Missing (or invalid type) string parameter credentialID").
///
/// `lenient` is for upstream answers: numbers and numeric strings are accepted for each other
/// because real RSSPs send `multisign`, `SCAL` and `key.len` both ways.
public struct JSONObject: Sendable {
    public var fields: [String: JSONValue]
    public let lenient: Bool

    public init(_ fields: [String: JSONValue] = [:], lenient: Bool = false) {
        self.fields = fields
        self.lenient = lenient
    }

    public init(parsing data: Data, lenient: Bool = false) throws {
        if data.isEmpty || data.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            self.init([:], lenient: lenient)
            return
        }
        guard case .object(let fields) = try JSONValue.parse(data) else {
            throw CSCError.invalidRequest("The request body must be a JSON object")
        }
        self.init(fields, lenient: lenient)
    }

    public subscript(key: String) -> JSONValue? {
        get { fields[key] }
        set { fields[key] = newValue }
    }

    public func has(_ key: String) -> Bool {
        if let v = fields[key], v != .null { return true }
        return false
    }

    public func string(_ key: String) throws -> String? {
        switch fields[key] {
        case nil, .null?: return nil
        case .string(let s)?: return s
        case .number(let n)? where lenient: return n.rounded() == n ? String(Int64(n)) : String(n)
        default: throw CSCError.invalidRequest("Missing (or invalid type) string parameter \(key)")
        }
    }

    public func requiredString(_ key: String) throws -> String {
        guard let s = try string(key), !s.isEmpty else {
            throw CSCError.invalidRequest("Missing (or invalid type) string parameter \(key)")
        }
        return s
    }

    public func int(_ key: String) throws -> Int? {
        switch fields[key] {
        case nil, .null?: return nil
        case .number(let n)? where n.rounded() == n && abs(n) < 1e15: return Int(n)
        // Numeric strings are accepted from clients too: the 1.0.3.0 samples send "maxResults": "10".
        case .string(let s)?:
            if let i = Int(s.trimmingCharacters(in: .whitespaces)) { return i }
            fallthrough
        default: throw CSCError.invalidRequest("Missing (or invalid type) integer parameter \(key)")
        }
    }

    public func requiredInt(_ key: String) throws -> Int {
        guard let i = try int(key) else {
            throw CSCError.invalidRequest("Missing (or invalid type) integer parameter \(key)")
        }
        return i
    }

    public func bool(_ key: String) throws -> Bool? {
        switch fields[key] {
        case nil, .null?: return nil
        case .bool(let b)?: return b
        case .string(let s)? where lenient && (s == "true" || s == "false"): return s == "true"
        default: throw CSCError.invalidRequest("Missing (or invalid type) boolean parameter \(key)")
        }
    }

    public func stringArray(_ key: String) throws -> [String]? {
        switch fields[key] {
        case nil, .null?: return nil
        case .array(let items)?:
            var out = [String]()
            out.reserveCapacity(items.count)
            for item in items {
                guard case .string(let s) = item else {
                    throw CSCError.invalidRequest("Missing (or invalid type) array parameter \(key)")
                }
                out.append(s)
            }
            return out
        default: throw CSCError.invalidRequest("Missing (or invalid type) array parameter \(key)")
        }
    }

    public func object(_ key: String) throws -> JSONObject? {
        switch fields[key] {
        case nil, .null?: return nil
        case .object(let o)?: return JSONObject(o, lenient: lenient)
        default: throw CSCError.invalidRequest("Missing (or invalid type) object parameter \(key)")
        }
    }

    public func objectArray(_ key: String) throws -> [JSONObject]? {
        switch fields[key] {
        case nil, .null?: return nil
        case .array(let items)?:
            return try items.map {
                guard case .object(let o) = $0 else {
                    throw CSCError.invalidRequest("Missing (or invalid type) array parameter \(key)")
                }
                return JSONObject(o, lenient: lenient)
            }
        default: throw CSCError.invalidRequest("Missing (or invalid type) array parameter \(key)")
        }
    }

    /// Base64 strings decoded; `what` names the field in the error.
    public func base64Array(_ key: String) throws -> [Data]? {
        guard let strings = try stringArray(key) else { return nil }
        return try strings.map {
            guard let d = Data(base64Encoded: $0), !d.isEmpty else {
                throw CSCError.invalidRequest("Invalid Base64 \(key) string parameter")
            }
            return d
        }
    }

    public var value: JSONValue { .object(fields) }
    public func serialized() -> Data { value.serialized() }
}

extension JSONValue {
    public static func strings(_ s: [String]) -> JSONValue { .array(s.map { .string($0) }) }
    public static func int(_ i: Int) -> JSONValue { .number(Double(i)) }
}
