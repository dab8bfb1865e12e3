import CSC
import Foundation
import Testing

// Upstream answers are read leniently (CSC-API.md §10.10): real RSSPs send multisign, SCAL and
// key.len as numbers or as strings. And v2 clients in the wild (EUDI Swift) send snake_case
// aliases of some camelCase fields (§10.6).

struct LenientInfoRow: Sendable, CustomTestStringConvertible {
    let name: String
    let body: String
    var testDescription: String { name }
}

private let expectedInfo = CredentialInfo(
    key: KeyInfo(status: .enabled, algorithms: [SignatureAlgorithm.rsaEncryption], length: 2048),
    cert: CertInfo(), authMode: .implicit, scal: .two, multisign: 5)

let lenientInfoRows: [LenientInfoRow] = [
    LenientInfoRow(name: "as the spec types them", body: """
        {"key":{"status":"enabled","algo":["1.2.840.113549.1.1.1"],"len":2048},"authMode":"implicit","SCAL":"2","multisign":5}
        """),
    LenientInfoRow(name: "all numbers", body: """
        {"key":{"status":"enabled","algo":["1.2.840.113549.1.1.1"],"len":2048},"authMode":"implicit","SCAL":2,"multisign":5}
        """),
    LenientInfoRow(name: "all numeric strings (EUDI v1 server, laverca)", body: """
        {"key":{"status":"enabled","algo":["1.2.840.113549.1.1.1"],"len":"2048"},"authMode":"implicit","SCAL":"2","multisign":"5"}
        """),
]

@Test("an upstream's multisign, SCAL and key.len read the same as numbers or numeric strings", arguments: lenientInfoRows)
func lenientCredentialInfo(_ row: LenientInfoRow) throws {
    for codec in [CSCCodec.v1, .v2] {
        #expect(try codec.decodeCredentialInfo(wire(row.body)) == expectedInfo)
    }
}

@Test("an upstream's numeric expiresIn and expires_in may be strings")
func lenientResults() throws {
    #expect(try CSCCodec.v1.decodeAuthorizeResult(wire(#"{"SAD":"s","expiresIn":"300"}"#)) == AuthorizeResult(sad: "s", expiresIn: 300))
    #expect(try CSCCodec.v1.decodeAuthorizeResult(wire(#"{"SAD":"s"}"#)) == AuthorizeResult(sad: "s", expiresIn: 3600))
    #expect(try CSCCodec.v1.decodeTokenResult(wire(#"{"access_token":"t","expires_in":"60"}"#))
        == TokenResult(accessToken: "t", expiresIn: 60))
}

@Test("v2 signHash accepts the EUDI snake_case aliases sign_algo_params and client_data")
func eudiSignHashAliases() throws {
    let r = try CSCCodec.v2.decodeSignHashRequest(wire("""
        {"credentialID":"c","SAD":"s","hashes":["\(Vector.b1)"],"hashAlgorithmOID":"\(Vector.sha256)",
         "signAlgo":"1.2.840.113549.1.1.10","sign_algo_params":"\(Vector.pssSHA256Params)","client_data":"eudi-tx"}
        """))
    #expect(r.signAlgorithmParameters == Data(base64Encoded: Vector.pssSHA256Params))
    #expect(r.clientData == "eudi-tx")
}

@Test("v2 credentials/list accepts the EUDI aliases user_id, auth_info and only_valid")
func eudiListAliases() throws {
    let r = try CSCCodec.v2.decodeListRequest(wire(#"{"user_id":"u-1","auth_info":true,"only_valid":true}"#))
    #expect(r == CredentialListRequest(userID: "u-1", authInfo: true, onlyValid: true))
}

@Test("when both spellings are sent, the spec's camelCase name wins")
func camelCaseWinsOverAlias() throws {
    let r = try CSCCodec.v2.decodeSignHashRequest(wire("""
        {"credentialID":"c","hashes":["\(Vector.b1)"],"signAlgo":"1.2.840.10045.4.3.2","clientData":"spec","client_data":"alias"}
        """))
    #expect(r.clientData == "spec")
}

@Test("client requests stay strict: a number where a string is due is refused")
func clientRequestsAreStrict() {
    #expect(throws: CSCError.invalidRequest("Missing (or invalid type) string parameter SAD")) {
        try CSCCodec.v1.decodeSignHashRequest(wire(
            #"{"credentialID":"c","SAD":12345,"hash":["\#(Vector.b1)"],"signAlgo":"1.2.840.10045.4.3.2"}"#))
    }
}

@Test("an upstream's CSC error body is recognised, anything else is not")
func upstreamErrorBody() {
    let e = CSCCodec.decodeError(Data(#"{"error":"invalid_request","error_description":"Invalid parameter SAD"}"#.utf8))
    #expect(e?.error == "invalid_request")
    #expect(e?.description == "Invalid parameter SAD")
    #expect(CSCCodec.decodeError(Data("Internal Server Error".utf8)) == nil)
    #expect(CSCCodec.decodeError(Data(#"{"message":"nope"}"#.utf8)) == nil)
}
