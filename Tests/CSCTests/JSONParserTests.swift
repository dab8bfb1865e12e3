import Foundation
import Testing
@testable import CSC

@Suite("JSON parser: strict, bounded, exact")
struct JSONParserTests {
    @Test("values parse to the right JSONValue", arguments: [
        (#"{"a":1,"b":[true,false,null],"c":"x"}"#, JSONValue.object(["a": .number(1), "b": .array([.bool(true), .bool(false), .null]), "c": .string("x")])),
        (#"  [ -0.5e2 , 10 ]  "#, .array([.number(-50), .number(10)])),
        (#""\u00e9\n\"\\\/""#, .string("é\n\"\\/")),
        (#""\ud83d\ude00""#, .string("😀")),
        (#"{}"#, .object([:])),
        (#"{"k":1,"k":2}"#, .object(["k": .number(2)])),
    ])
    func parses(_ text: String, _ expected: JSONValue) throws {
        #expect(try JSONParser.parse(Data(text.utf8)) == expected)
    }

    @Test("malformed input is refused, never half-read", arguments: [
        "", "{", "[1,]", "{\"a\":}", "01", "1.", "-", "1e", "tru", "nul", "\"abc", "\"\u{01}\"", "{\"a\" 1}",
        "[1 2]", "\"\\x\"", "\"\\ud83d\"", "\"\\ud83d\\u0041\"", "{} x", "NaN", "1e999", "\"\\u12G4\"",
    ])
    func refuses(_ text: String) {
        #expect(throws: (any Error).self) { try JSONParser.parse(Data(text.utf8)) }
    }

    @Test("invalid UTF-8 inside a string is refused")
    func invalidUTF8() {
        #expect(throws: (any Error).self) { try JSONParser.parse(Data([0x22, 0xC3, 0x28, 0x22])) }
    }

    @Test("nesting beyond the limit is refused instead of exhausting the stack")
    func nesting() throws {
        let ok = String(repeating: "[", count: JSONParser.maxDepth - 1) + String(repeating: "]", count: JSONParser.maxDepth - 1)
        _ = try JSONParser.parse(Data(ok.utf8))
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: (any Error).self) { try JSONParser.parse(Data(deep.utf8)) }
    }

    @Test("serialising and parsing again gives the same value")
    func roundTrip() throws {
        let v = JSONValue.object(["s": .string("a\"b\\c\n\u{01}é"), "n": .number(-12), "f": .number(0.25),
                                  "a": .array([.null, .bool(true)])])
        #expect(try JSONParser.parse(v.serialized()) == v)
    }
}
