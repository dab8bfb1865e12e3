import CSC
import Foundation
import Testing

// What a client sees when its request is wrong: the CSC error text (CSC-API.md §4.3), with
// the field names of the client's own version.

enum Operation: String, Sendable {
    case authorize, extend, signHash, credentialInfo, list, challenge, timestamp
}

struct BadRequestRow: Sendable, CustomTestStringConvertible {
    let version: CSCVersion
    let operation: Operation
    let body: String
    let error: CSCError
    var testDescription: String { "\(version.rawValue) \(operation.rawValue) \(body) → \(error.errorDescription)" }

    init(_ version: CSCVersion, _ operation: Operation, _ body: String, _ error: CSCError) {
        self.version = version; self.operation = operation; self.body = body; self.error = error
    }

    init(_ version: CSCVersion, _ operation: Operation, _ body: String, _ description: String) {
        self.init(version, operation, body, .invalidRequest(description))
    }

    func decode() throws {
        let codec = CSCCodec.of(version)
        let o = try wire(body)
        switch operation {
        case .authorize: _ = try codec.decodeAuthorizeRequest(o)
        case .extend: _ = try codec.decodeExtendRequest(o)
        case .signHash: _ = try codec.decodeSignHashRequest(o)
        case .credentialInfo: _ = try codec.decodeCredentialInfoRequest(o)
        case .list: _ = try codec.decodeListRequest(o)
        case .challenge: _ = try codec.decodeChallengeRequest(o)
        case .timestamp: _ = try codec.decodeTimestampRequest(o)
        }
    }
}

private let h1 = Vector.b1
private let ecdsa = SignatureAlgorithm.ecdsaWithSHA256

let badRequestRows: [BadRequestRow] = [
    // credentialID
    BadRequestRow(.v1, .authorize, #"{"numSignatures":1}"#, "Missing (or invalid type) string parameter credentialID"),
    BadRequestRow(.v2, .authorize, #"{"credentialID":7,"numSignatures":1}"#,
                  "Missing (or invalid type) string parameter credentialID"),
    BadRequestRow(.v1, .signHash, #"{"SAD":"s","hash":["\#(h1)"],"signAlgo":"\#(ecdsa)"}"#,
                  "Missing (or invalid type) string parameter credentialID"),
    BadRequestRow(.v1, .credentialInfo, #"{"credentialID":""}"#, "Missing (or invalid type) string parameter credentialID"),
    // numSignatures
    BadRequestRow(.v1, .authorize, #"{"credentialID":"c"}"#, "Missing (or invalid type) integer parameter numSignatures"),
    BadRequestRow(.v1, .authorize, #"{"credentialID":"c","numSignatures":"two"}"#,
                  "Missing (or invalid type) integer parameter numSignatures"),
    BadRequestRow(.v2, .authorize, #"{"credentialID":"c","numSignatures":1.5}"#,
                  "Missing (or invalid type) integer parameter numSignatures"),
    BadRequestRow(.v2, .authorize, #"{"credentialID":"c","numSignatures":true}"#,
                  "Missing (or invalid type) integer parameter numSignatures"),
    BadRequestRow(.v1, .authorize, #"{"credentialID":"c","numSignatures":0}"#, "Invalid value for parameter numSignatures"),
    BadRequestRow(.v2, .authorize, #"{"credentialID":"c","numSignatures":-1}"#, "Invalid value for parameter numSignatures"),
    // hash arrays
    BadRequestRow(.v1, .authorize, #"{"credentialID":"c","numSignatures":1,"hash":[]}"#, "Empty hash array"),
    BadRequestRow(.v1, .signHash, #"{"credentialID":"c","SAD":"s","hash":[],"signAlgo":"\#(ecdsa)"}"#, "Empty hash array"),
    BadRequestRow(.v2, .signHash, #"{"credentialID":"c","SAD":"s","hashes":[],"signAlgo":"\#(ecdsa)"}"#, "Empty hashes array"),
    BadRequestRow(.v1, .extend, #"{"credentialID":"c","SAD":"s","hash":[]}"#, "Empty hash array"),
    BadRequestRow(.v1, .signHash, #"{"credentialID":"c","SAD":"s","hash":["not base64!"],"signAlgo":"\#(ecdsa)"}"#,
                  "Invalid Base64 hash string parameter"),
    BadRequestRow(.v1, .authorize, #"{"credentialID":"c","numSignatures":1,"hash":["%%%"]}"#,
                  "Invalid Base64 hash string parameter"),
    BadRequestRow(.v2, .signHash, #"{"credentialID":"c","SAD":"s","hashes":["***"],"signAlgo":"\#(ecdsa)"}"#,
                  "Invalid Base64 hashes string parameter"),
    BadRequestRow(.v1, .signHash, #"{"credentialID":"c","SAD":"s","hash":"\#(h1)","signAlgo":"\#(ecdsa)"}"#,
                  "Missing (or invalid type) array parameter hash"),
    BadRequestRow(.v1, .signHash, #"{"credentialID":"c","SAD":"s","signAlgo":"\#(ecdsa)"}"#,
                  "Missing (or invalid type) array parameter hash"),
    BadRequestRow(.v1, .timestamp, #"{"hash":"%%%","hashAlgo":"\#(Vector.sha256)"}"#, "Invalid Base64 hash string parameter"),
    // names of the other version
    BadRequestRow(.v2, .signHash, #"{"credentialID":"c","SAD":"s","hash":["\#(h1)"],"signAlgo":"\#(ecdsa)"}"#,
                  "Parameter hash is not part of CSC v2; send hashes"),
    BadRequestRow(.v2, .signHash,
                  #"{"credentialID":"c","SAD":"s","hashes":["\#(h1)"],"hashAlgo":"\#(Vector.sha256)","signAlgo":"1.2.840.113549.1.1.1"}"#,
                  "Parameter hashAlgo is not part of CSC v2; send hashAlgorithmOID"),
    BadRequestRow(.v2, .authorize, #"{"credentialID":"c","numSignatures":1,"PIN":"1234"}"#,
                  "Parameter PIN is not part of CSC v2; send authData"),
    BadRequestRow(.v1, .signHash, #"{"credentialID":"c","SAD":"s","hashes":["\#(h1)"],"signAlgo":"\#(ecdsa)"}"#,
                  "Parameter hashes is not part of CSC v1; send hash"),
    BadRequestRow(.v1, .authorize, #"{"credentialID":"c","numSignatures":1,"authData":[{"id":"PIN","value":"1"}]}"#,
                  "Parameter authData is not part of CSC v1; send PIN/OTP"),
    // v2 wants the hash algorithm whenever hashes are sent
    BadRequestRow(.v2, .authorize, #"{"credentialID":"c","numSignatures":1,"hashes":["\#(h1)"]}"#,
                  "Missing (or invalid type) string parameter hashAlgorithmOID"),
    BadRequestRow(.v2, .authorize, #"{"credentialID":"c","numSignatures":1,"authData":[{"id":"FACE","value":"x"}]}"#,
                  "Invalid parameter authData: unknown object id 'FACE'"),
    BadRequestRow(.v1, .authorize, #"{"credentialID":"c","numSignatures":1,"description":"\#(String(repeating: "d", count: 501))"}"#,
                  "Invalid parameter description"),
    // signHash
    BadRequestRow(.v2, .signHash, #"{"credentialID":"c","hashes":["\#(h1)"],"signAlgo":"\#(ecdsa)","operationMode":"A"}"#,
                  .notImplemented("Asynchronous signing (operationMode A) is not supported")),
    BadRequestRow(.v2, .signHash, #"{"credentialID":"c","hashes":["\#(h1)"],"signAlgo":"\#(ecdsa)","operationMode":"X"}"#,
                  "Invalid parameter operationMode"),
    BadRequestRow(.v1, .signHash, #"{"credentialID":"c","SAD":"s","hash":["\#(h1)"]}"#,
                  "Missing (or invalid type) string parameter signAlgo"),
    BadRequestRow(.v1, .signHash, #"{"credentialID":"c","SAD":"s","hash":["\#(h1)"],"signAlgo":"1.2.840.113549.1.1.10","signAlgoParams":"@@"}"#,
                  "Invalid parameter signAlgoParams"),
    // certificates
    BadRequestRow(.v1, .credentialInfo, #"{"credentialID":"c","certificates":"all"}"#, "Invalid parameter certificates"),
    BadRequestRow(.v2, .credentialInfo, #"{"credentialID":"c","certificates":"everything"}"#, "Invalid parameter certificates"),
    BadRequestRow(.v2, .list, #"{"credentialInfo":true,"certificates":"full"}"#, "Invalid parameter certificates"),
    BadRequestRow(.v1, .credentialInfo, #"{"credentialID":"c","certInfo":"yes"}"#,
                  "Missing (or invalid type) boolean parameter certInfo"),
    // credentials/list, getChallenge, timestamp
    BadRequestRow(.v1, .list, #"{"maxResults":0}"#, "Invalid parameter maxResults"),
    BadRequestRow(.v2, .challenge, #"{"authObjectID":"OTP"}"#, "Missing (or invalid type) string parameter credentialID"),
    BadRequestRow(.v1, .timestamp, #"{"hash":"\#(h1)","hashAlgo":"\#(Vector.sha256)","nonce":"xyz"}"#, "Invalid parameter nonce"),
    BadRequestRow(.v1, .timestamp, #"{"hash":"\#(h1)"}"#, "Missing (or invalid type) string parameter hashAlgo"),
]

@Test("a wrong request is refused with the CSC error text", arguments: badRequestRows)
func badRequest(_ row: BadRequestRow) {
    #expect(throws: row.error) { try row.decode() }
}

@Test("a body that is not JSON is 400 'The request body is not valid JSON'", arguments: [
    "{", #"{"credentialID":}"#, "credentialID=c", "\u{FEFF}nope", #"{"a":1}}"#,
])
func invalidJSON(_ body: String) {
    #expect(throws: CSCError.invalidRequest("The request body is not valid JSON")) {
        try JSONObject(parsing: Data(body.utf8))
    }
}

@Test("a JSON body that is not an object is refused", arguments: ["[1,2]", "[]", "\"text\"", "42", "null"])
func nonObjectBody(_ body: String) {
    #expect(throws: CSCError.invalidRequest("The request body must be a JSON object")) {
        try JSONObject(parsing: Data(body.utf8))
    }
}

@Test("an empty body is an empty request (methods without inputs)", arguments: ["", "  \n\t"])
func emptyBody(_ body: String) throws {
    #expect(try JSONObject(parsing: Data(body.utf8)).fields.isEmpty)
}

@Test("a redundant hashAlgo is accepted (pyHanko always sends it; the spec says ignore it)")
func redundantHashAlgoAccepted() throws {
    let r = try CSCCodec.v1.decodeSignHashRequest(wire(
        #"{"credentialID":"c","SAD":"s","hash":["\#(h1)"],"hashAlgo":"\#(Vector.sha256)","signAlgo":"\#(ecdsa)"}"#))
    #expect(r.signAlgorithm == ecdsa)
}

@Test("numSignatures as a numeric string is read as a number")
func numSignaturesNumericString() throws {
    #expect(try CSCCodec.v1.decodeAuthorizeRequest(wire(#"{"credentialID":"c","numSignatures":"3"}"#)).numSignatures == 3)
}
