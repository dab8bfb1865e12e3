import CSC
import Foundation
import Testing

// CSC-API.md §9: every v1 ↔ v2 difference a translating gateway handles, one row each.
// Each row gives the v1 wire form, the v2 wire form and the version-neutral model between them.
// A row promises four things: each wire form decodes to the model (minus what its version
// cannot carry), and the model encodes to each wire form — so a v1 client can be served by a
// v2 upstream and the other way round.

// MARK: - credentials/authorize

struct AuthorizeRow: Sendable, CustomTestStringConvertible {
    let name: String
    let v1: String
    let v2: String
    let model: AuthorizeRequest
    /// v1 authorize has no hash algorithm parameter; the gateway infers it later.
    var fromV1: AuthorizeRequest? = nil
    var testDescription: String { name }
}

let authorizeRows: [AuthorizeRow] = [
    AuthorizeRow(
        name: "PIN and OTP with SCAL 2 hashes: hash/PIN/OTP ↔ hashes/hashAlgorithmOID/authData",
        v1: """
            {"credentialID":"cred-1","numSignatures":2,"hash":["\(Vector.b1)","\(Vector.b2)"],
             "PIN":"12345678","OTP":"987654"}
            """,
        v2: """
            {"credentialID":"cred-1","numSignatures":2,"hashes":["\(Vector.b1)","\(Vector.b2)"],
             "hashAlgorithmOID":"\(Vector.sha256)",
             "authData":[{"id":"PIN","value":"12345678"},{"id":"OTP","value":"987654"}]}
            """,
        model: AuthorizeRequest(credentialID: "cred-1", numSignatures: 2, hashes: [Vector.h1, Vector.h2],
                                hashAlgorithm: Vector.sha256, pin: "12345678", otp: "987654"),
        fromV1: AuthorizeRequest(credentialID: "cred-1", numSignatures: 2, hashes: [Vector.h1, Vector.h2],
                                 pin: "12345678", otp: "987654")),
    AuthorizeRow(
        name: "PIN only, SCAL 1: PIN ↔ authData [{id: PIN}]",
        v1: #"{"credentialID":"cred-1","numSignatures":1,"PIN":"1234"}"#,
        v2: #"{"credentialID":"cred-1","numSignatures":1,"authData":[{"id":"PIN","value":"1234"}]}"#,
        model: AuthorizeRequest(credentialID: "cred-1", numSignatures: 1, pin: "1234")),
    AuthorizeRow(
        name: "OTP only: OTP ↔ authData [{id: OTP}]",
        v1: #"{"credentialID":"cred-1","numSignatures":1,"OTP":"246810"}"#,
        v2: #"{"credentialID":"cred-1","numSignatures":1,"authData":[{"id":"OTP","value":"246810"}]}"#,
        model: AuthorizeRequest(credentialID: "cred-1", numSignatures: 1, otp: "246810")),
    AuthorizeRow(
        name: "implicit: no factors, description and clientData pass through",
        v1: #"{"credentialID":"cred-1","numSignatures":3,"description":"Sign contract 42","clientData":"tx-42"}"#,
        v2: #"{"credentialID":"cred-1","numSignatures":3,"description":"Sign contract 42","clientData":"tx-42"}"#,
        model: AuthorizeRequest(credentialID: "cred-1", numSignatures: 3, description: "Sign contract 42",
                                clientData: "tx-42")),
]

@Test("credentials/authorize: v1 and v2 wire forms map to one model", arguments: authorizeRows)
func authorizeMapping(_ row: AuthorizeRow) throws {
    #expect(try CSCCodec.v1.decodeAuthorizeRequest(wire(row.v1)) == (row.fromV1 ?? row.model))
    #expect(try CSCCodec.v2.decodeAuthorizeRequest(wire(row.v2)) == row.model)
    #expect(try CSCCodec.v1.encode(row.model).value == wireValue(row.v1))
    #expect(try CSCCodec.v2.encode(row.model).value == wireValue(row.v2))
}

// MARK: - credentials/extendTransaction

struct ExtendRow: Sendable, CustomTestStringConvertible {
    let name: String
    let v1: String
    let v2: String
    let model: ExtendTransactionRequest
    var fromV1: ExtendTransactionRequest? = nil
    var testDescription: String { name }
}

let extendRows: [ExtendRow] = [
    ExtendRow(
        name: "SCAL 2: hash ↔ hashes + hashAlgorithmOID",
        v1: #"{"credentialID":"cred-1","SAD":"sad-1","hash":["\#(Vector.b1)"]}"#,
        v2: #"{"credentialID":"cred-1","SAD":"sad-1","hashes":["\#(Vector.b1)"],"hashAlgorithmOID":"\#(Vector.sha256)"}"#,
        model: ExtendTransactionRequest(credentialID: "cred-1", sad: "sad-1", hashes: [Vector.h1],
                                        hashAlgorithm: Vector.sha256),
        fromV1: ExtendTransactionRequest(credentialID: "cred-1", sad: "sad-1", hashes: [Vector.h1])),
    ExtendRow(
        name: "SCAL 1: no hashes, clientData passes through",
        v1: #"{"credentialID":"cred-1","SAD":"sad-1","clientData":"tx-7"}"#,
        v2: #"{"credentialID":"cred-1","SAD":"sad-1","clientData":"tx-7"}"#,
        model: ExtendTransactionRequest(credentialID: "cred-1", sad: "sad-1", clientData: "tx-7")),
]

@Test("credentials/extendTransaction: v1 and v2 wire forms map to one model", arguments: extendRows)
func extendMapping(_ row: ExtendRow) throws {
    #expect(try CSCCodec.v1.decodeExtendRequest(wire(row.v1)) == (row.fromV1 ?? row.model))
    #expect(try CSCCodec.v2.decodeExtendRequest(wire(row.v2)) == row.model)
    #expect(try CSCCodec.v1.encode(row.model).value == wireValue(row.v1))
    #expect(try CSCCodec.v2.encode(row.model).value == wireValue(row.v2))
}

// MARK: - signatures/signHash

struct SignHashRow: Sendable, CustomTestStringConvertible {
    let name: String
    let v1: String
    let v2: String
    let model: SignHashRequest
    var testDescription: String { name }
}

let signHashRows: [SignHashRow] = [
    SignHashRow(
        name: "raw RSA: hash/hashAlgo ↔ hashes/hashAlgorithmOID",
        v1: """
            {"credentialID":"cred-1","SAD":"sad-1","hash":["\(Vector.b1)"],"hashAlgo":"\(Vector.sha256)",
             "signAlgo":"1.2.840.113549.1.1.1"}
            """,
        v2: """
            {"credentialID":"cred-1","SAD":"sad-1","hashes":["\(Vector.b1)"],"hashAlgorithmOID":"\(Vector.sha256)",
             "signAlgo":"1.2.840.113549.1.1.1"}
            """,
        model: SignHashRequest(credentialID: "cred-1", sad: "sad-1", hashes: [Vector.h1], hashAlgorithm: Vector.sha256,
                               signAlgorithm: SignatureAlgorithm.rsaEncryption)),
    SignHashRow(
        name: "ECDSA with an implied hash: hash ↔ hashes, no hash algorithm either side",
        v1: """
            {"credentialID":"cred-1","SAD":"sad-1","hash":["\(Vector.b1)","\(Vector.b2)"],
             "signAlgo":"1.2.840.10045.4.3.2","clientData":"batch-9"}
            """,
        v2: """
            {"credentialID":"cred-1","SAD":"sad-1","hashes":["\(Vector.b1)","\(Vector.b2)"],
             "signAlgo":"1.2.840.10045.4.3.2","clientData":"batch-9"}
            """,
        model: SignHashRequest(credentialID: "cred-1", sad: "sad-1", hashes: [Vector.h1, Vector.h2],
                               signAlgorithm: SignatureAlgorithm.ecdsaWithSHA256, clientData: "batch-9")),
    SignHashRow(
        name: "RSASSA-PSS: signAlgoParams keeps its name in both versions",
        v1: """
            {"credentialID":"cred-1","SAD":"sad-1","hash":["\(Vector.b1)"],"hashAlgo":"\(Vector.sha256)",
             "signAlgo":"1.2.840.113549.1.1.10","signAlgoParams":"\(Vector.pssSHA256Params)"}
            """,
        v2: """
            {"credentialID":"cred-1","SAD":"sad-1","hashes":["\(Vector.b1)"],"hashAlgorithmOID":"\(Vector.sha256)",
             "signAlgo":"1.2.840.113549.1.1.10","signAlgoParams":"\(Vector.pssSHA256Params)"}
            """,
        model: SignHashRequest(credentialID: "cred-1", sad: "sad-1", hashes: [Vector.h1], hashAlgorithm: Vector.sha256,
                               signAlgorithm: SignatureAlgorithm.rsassaPSS,
                               signAlgorithmParameters: Data(base64Encoded: Vector.pssSHA256Params))),
]

@Test("signatures/signHash: v1 and v2 wire forms map to one model", arguments: signHashRows)
func signHashMapping(_ row: SignHashRow) throws {
    #expect(try CSCCodec.v1.decodeSignHashRequest(wire(row.v1)) == row.model)
    #expect(try CSCCodec.v2.decodeSignHashRequest(wire(row.v2)) == row.model)
    #expect(try CSCCodec.v1.encode(row.model).value == wireValue(row.v1))
    #expect(try CSCCodec.v2.encode(row.model).value == wireValue(row.v2))
}

@Test("signHash v2: SAD is optional (a credential-scope token stands for it); v1 requires it")
func signHashSADOptionalOnV2() throws {
    let v2 = try CSCCodec.v2.decodeSignHashRequest(wire(
        #"{"credentialID":"c","hashes":["\#(Vector.b1)"],"signAlgo":"1.2.840.10045.4.3.2","operationMode":"S"}"#))
    #expect(v2.sad == nil)
    #expect(throws: CSCError.invalidRequest("Missing (or invalid type) string parameter SAD")) {
        try CSCCodec.v1.decodeSignHashRequest(wire(
            #"{"credentialID":"c","hash":["\#(Vector.b1)"],"signAlgo":"1.2.840.10045.4.3.2"}"#))
    }
}

@Test("signatures/signHash result: signatures keep their name and order in both versions")
func signHashResultMapping() throws {
    let result = SignHashResult(signatures: [Data([1, 2, 3]), Data([4, 5])])
    let expected = try wireValue(#"{"signatures":["AQID","BAU="]}"#)
    for codec in [CSCCodec.v1, .v2] {
        #expect(codec.encode(result).value == expected)
        #expect(try codec.decodeSignHashResult(wire(#"{"signatures":["AQID","BAU="]}"#)) == result)
    }
}

// MARK: - credentials/info

struct CredentialInfoRow: Sendable, CustomTestStringConvertible {
    let name: String
    let v1: String
    let v2: String
    let model: CredentialInfo
    var fromV1: CredentialInfo? = nil
    var testDescription: String { name }
}

enum Infos {
    static let rsaKey = #"{"status":"enabled","algo":["1.2.840.113549.1.1.1","1.2.840.113549.1.1.11"],"len":2048}"#
    static let ecKey = #"{"status":"enabled","algo":["1.2.840.10045.4.3.2"],"len":256,"curve":"1.2.840.10045.3.1.7"}"#
    static let rsa = KeyInfo(status: .enabled, algorithms: [SignatureAlgorithm.rsaEncryption, SignatureAlgorithm.sha256WithRSA],
                             length: 2048)
    static let ec = KeyInfo(status: .enabled, algorithms: [SignatureAlgorithm.ecdsaWithSHA256], length: 256,
                            curve: "1.2.840.10045.3.1.7")

    static let implicitEC = CredentialInfo(key: ec, cert: CertInfo(), authMode: .implicit)
    static let implicitECV1 = #"{"key":\#(ecKey),"cert":{},"authMode":"implicit","SCAL":"1","multisign":1}"#
    static let implicitECV2 = #"{"key":\#(ecKey),"cert":{},"auth":{"mode":"explicit"},"SCAL":"1","multisign":1}"#
}

let credentialInfoRows: [CredentialInfoRow] = [
    CredentialInfoRow(
        name: "explicit PIN + offline TOTP: authMode/PIN/OTP ↔ auth{mode, expression, objects}",
        v1: """
            {"description":"Qualified signing key","key":\(Infos.rsaKey),
             "cert":{"status":"valid","certificates":["MIIBcert"]},
             "authMode":"explicit",
             "PIN":{"presence":"true","format":"N","label":"PIN","description":"Your signing PIN"},
             "OTP":{"presence":"true","type":"offline","format":"N","label":"OTP","provider":"totp"},
             "SCAL":"2","multisign":5,"lang":"en-US"}
            """,
        v2: """
            {"description":"Qualified signing key","key":\(Infos.rsaKey),
             "cert":{"status":"valid","certificates":["MIIBcert"]},
             "auth":{"mode":"explicit","expression":"PIN AND OTP","objects":[
                {"type":"Password","id":"PIN","format":"N","label":"PIN","description":"Your signing PIN"},
                {"type":"Password","id":"OTP","format":"N","generator":"totp","label":"OTP"}]},
             "SCAL":"2","multisign":5,"lang":"en-US"}
            """,
        model: CredentialInfo(
            description: "Qualified signing key", key: Infos.rsa,
            cert: CertInfo(status: .valid, certificates: ["MIIBcert"]), authMode: .explicit,
            authFactors: [
                AuthFactor(kind: .pin, presence: "true", format: "N", label: "PIN", description: "Your signing PIN"),
                AuthFactor(kind: .otp, presence: "true", format: "N", label: "OTP", otpType: "offline", provider: "totp"),
            ],
            scal: .two, multisign: 5, lang: "en-US")),
    CredentialInfoRow(
        name: "online OTP (sent by the RSSP): OTP.type online ↔ ChallengeResponse object",
        v1: """
            {"key":\(Infos.rsaKey),"cert":{},"authMode":"explicit",
             "OTP":{"presence":"true","type":"online","format":"N"},"SCAL":"1","multisign":1}
            """,
        v2: """
            {"key":\(Infos.rsaKey),"cert":{},
             "auth":{"mode":"explicit","expression":"OTP","objects":[{"type":"ChallengeResponse","id":"OTP","format":"N"}]},
             "SCAL":"1","multisign":1}
            """,
        model: CredentialInfo(key: Infos.rsa, cert: CertInfo(), authMode: .explicit,
                              authFactors: [AuthFactor(kind: .otp, presence: "true", format: "N", otpType: "online")])),
    CredentialInfoRow(
        name: "implicit: shown on v2 as explicit without objects, read back as implicit",
        v1: Infos.implicitECV1, v2: Infos.implicitECV2, model: Infos.implicitEC),
    CredentialInfoRow(
        name: "oauth2code stays oauth2code; signatureQualifier exists only on v2",
        v1: #"{"key":\#(Infos.ecKey),"cert":{},"authMode":"oauth2code","SCAL":"2","multisign":10}"#,
        v2: """
            {"key":\(Infos.ecKey),"cert":{},"signatureQualifier":"eu_eidas_qes","auth":{"mode":"oauth2code"},
             "SCAL":"2","multisign":10}
            """,
        model: CredentialInfo(signatureQualifier: "eu_eidas_qes", key: Infos.ec, cert: CertInfo(), authMode: .oauth2code,
                              scal: .two, multisign: 10),
        fromV1: CredentialInfo(key: Infos.ec, cert: CertInfo(), authMode: .oauth2code, scal: .two, multisign: 10)),
]

@Test("credentials/info: v1 authMode/PIN/OTP and v2 auth objects describe one credential", arguments: credentialInfoRows)
func credentialInfoMapping(_ row: CredentialInfoRow) throws {
    #expect(try CSCCodec.v1.decodeCredentialInfo(wire(row.v1)) == (row.fromV1 ?? row.model))
    #expect(try CSCCodec.v2.decodeCredentialInfo(wire(row.v2)) == row.model)
    #expect(try CSCCodec.v1.encode(row.model).value == wireValue(row.v1))
    #expect(try CSCCodec.v2.encode(row.model).value == wireValue(row.v2))
}

// MARK: - credentials/list

struct ListRequestRow: Sendable, CustomTestStringConvertible {
    let name: String
    let codec: CSCCodec
    let wire: String
    let model: CredentialListRequest
    var testDescription: String { name }
}

let listRequestRows: [ListRequestRow] = [
    ListRequestRow(
        name: "v1 pages with maxResults and pageToken",
        codec: .v1, wire: #"{"maxResults":10,"pageToken":"p2","clientData":"c"}"#,
        model: CredentialListRequest(maxResults: 10, pageToken: "p2", clientData: "c")),
    ListRequestRow(
        name: "v2 asks for embedded descriptions and filters with onlyValid",
        codec: .v2, wire: #"{"credentialInfo":true,"certificates":"chain","certInfo":true,"authInfo":true,"onlyValid":true}"#,
        model: CredentialListRequest(credentialInfo: true, certificates: .chain, certInfo: true, authInfo: true,
                                     onlyValid: true)),
    ListRequestRow(
        name: "v2 onlyValid without credentialInfo",
        codec: .v2, wire: #"{"onlyValid":true}"#,
        model: CredentialListRequest(onlyValid: true)),
]

@Test("credentials/list request: v1 paging, v2 credentialInfo/onlyValid", arguments: listRequestRows)
func listRequestMapping(_ row: ListRequestRow) throws {
    #expect(try row.codec.decodeListRequest(wire(row.wire)) == row.model)
    #expect(try row.codec.encode(row.model).value == wireValue(row.wire))
}

@Test("credentials/list v1: maxResults as a numeric string is accepted (the 1.0.3.0 sample sends \"10\")")
func listMaxResultsAsString() throws {
    #expect(try CSCCodec.v1.decodeListRequest(wire(#"{"maxResults":"10"}"#)).maxResults == 10)
}

@Test("credentials/list v2: the v1 paging parameters are refused with the reason")
func listPagingRefusedOnV2() throws {
    let error = try #require(throws: CSCError.self) { try CSCCodec.v2.decodeListRequest(wire(#"{"maxResults":10}"#)) }
    #expect(error.status == 400 && error.error == "invalid_request")
    #expect(error.errorDescription.hasPrefix("Parameter maxResults is not part of CSC v2"))
}

struct ListResultRow: Sendable, CustomTestStringConvertible {
    let name: String
    let v1: String
    let v2: String
    let model: CredentialListResult
    let fromV1: CredentialListResult
    let fromV2: CredentialListResult
    var testDescription: String { name }
}

let listResultRows: [ListResultRow] = [
    ListResultRow(
        name: "v2 credentialInfos carry credentialID; v1 has ids only",
        v1: #"{"credentialIDs":["a","b"]}"#,
        v2: """
            {"credentialIDs":["a","b"],"onlyValid":true,"credentialInfos":[
               \(Infos.implicitECV2.dropLast()),"credentialID":"a"},
               \(Infos.implicitECV2.dropLast()),"credentialID":"b"}]}
            """,
        model: CredentialListResult(credentialIDs: ["a", "b"], credentialInfos: [Infos.implicitEC, Infos.implicitEC],
                                    onlyValid: true),
        fromV1: CredentialListResult(credentialIDs: ["a", "b"]),
        fromV2: CredentialListResult(credentialIDs: ["a", "b"], credentialInfos: [Infos.implicitEC, Infos.implicitEC],
                                     onlyValid: true)),
    ListResultRow(
        name: "v1 nextPageToken; v2 has no paging",
        v1: #"{"credentialIDs":["a"],"nextPageToken":"t2"}"#,
        v2: #"{"credentialIDs":["a"]}"#,
        model: CredentialListResult(credentialIDs: ["a"], nextPageToken: "t2"),
        fromV1: CredentialListResult(credentialIDs: ["a"], nextPageToken: "t2"),
        fromV2: CredentialListResult(credentialIDs: ["a"])),
]

@Test("credentials/list result: credentialIDs, v1 nextPageToken, v2 credentialInfos and onlyValid", arguments: listResultRows)
func listResultMapping(_ row: ListResultRow) throws {
    #expect(try CSCCodec.v1.decodeListResult(wire(row.v1)) == row.fromV1)
    #expect(try CSCCodec.v2.decodeListResult(wire(row.v2)) == row.fromV2)
    #expect(try CSCCodec.v1.encode(row.model).value == wireValue(row.v1))
    #expect(try CSCCodec.v2.encode(row.model).value == wireValue(row.v2))
}

// MARK: - credentials/sendOTP (v1) ↔ credentials/getChallenge (v2)

@Test("sendOTP {credentialID} and getChallenge {credentialID, authObjectID} are one operation")
func challengeMapping() throws {
    let fromV1 = try CSCCodec.v1.decodeChallengeRequest(wire(#"{"credentialID":"cred-1"}"#))
    let fromV2 = try CSCCodec.v2.decodeChallengeRequest(wire(#"{"credentialID":"cred-1","authObjectID":"OTP"}"#))
    #expect(fromV1 == ChallengeRequest(credentialID: "cred-1"))
    #expect(fromV2 == ChallengeRequest(credentialID: "cred-1", authObjectID: "OTP"))
    // A v1 client's sendOTP reaches a v2 upstream as getChallenge for the OTP object, and back.
    #expect(try CSCCodec.v2.encode(fromV1).value == wireValue(#"{"credentialID":"cred-1","authObjectID":"OTP"}"#))
    #expect(try CSCCodec.v1.encode(fromV2).value == wireValue(#"{"credentialID":"cred-1"}"#))
    #expect(CSCCodec.v1.challengeMethod == .credentialsSendOTP)
    #expect(CSCCodec.v2.challengeMethod == .credentialsGetChallenge)
    #expect(throws: CSCError.invalidRequest("Missing (or invalid type) string parameter authObjectID")) {
        try CSCCodec.v2.decodeChallengeRequest(wire(#"{"credentialID":"cred-1"}"#))
    }
}

struct MethodNameRow: Sendable, CustomTestStringConvertible {
    let method: CSCMethod
    let v1: String?
    let v2: String?
    var testDescription: String { method.rawValue }
}

let methodNameRows: [MethodNameRow] = [
    MethodNameRow(method: .credentialsSendOTP, v1: "credentials/sendOTP", v2: "credentials/getChallenge"),
    MethodNameRow(method: .credentialsGetChallenge, v1: nil, v2: "credentials/getChallenge"),
    MethodNameRow(method: .credentialsAuthorizeCheck, v1: nil, v2: "credentials/authorizeCheck"),
    MethodNameRow(method: .signaturesSignDoc, v1: nil, v2: "signatures/signDoc"),
    MethodNameRow(method: .signaturesSignPolling, v1: nil, v2: "signatures/signPolling"),
    MethodNameRow(method: .signaturesSignHash, v1: "signatures/signHash", v2: "signatures/signHash"),
    MethodNameRow(method: .credentialsExtendTransaction, v1: "credentials/extendTransaction",
                  v2: "credentials/extendTransaction"),
]

@Test("info.methods names each method as its version spells it (v1 has no v2-only methods)", arguments: methodNameRows)
func methodNames(_ row: MethodNameRow) {
    #expect(CSCCodec.v1.methodNames([row.method]) == (row.v1.map { [$0] } ?? []))
    #expect(CSCCodec.v2.methodNames([row.method]) == (row.v2.map { [$0] } ?? []))
}

@Test("an upstream's v2 getChallenge reads as the model's sendOTP")
func getChallengeDecodesAsSendOTP() throws {
    let info = try CSCCodec.v2.decodeServiceInfo(wire(
        #"{"specs":"2.0.0.2","methods":["credentials/getChallenge","signatures/signHash","vendor/custom"]}"#))
    #expect(info.methods == [.credentialsSendOTP, .signaturesSignHash])
}

// MARK: - info

@Test("info: specs per version; v2 adds signAlgorithms, signature_formats and conformance_levels")
func infoPerVersion() throws {
    let model = ServiceInfo(
        name: "cscgate", logo: "https://gw.example/logo.png", region: "EU", lang: "en-US", description: "Gateway",
        authTypes: ["basic", "oauth2client"], oauth2: "https://gw.example",
        methods: [.info, .credentialsList, .credentialsAuthorize, .credentialsSendOTP, .signaturesSignHash],
        signAlgorithms: [SignatureAlgorithm.rsaEncryption, SignatureAlgorithm.ecdsaWithSHA256])
    let common = """
        "name":"cscgate","logo":"https://gw.example/logo.png","region":"EU","lang":"en-US","description":"Gateway",
        "authType":["basic","oauth2client"],"oauth2":"https://gw.example"
        """
    #expect(try CSCCodec.v1.encode(model).value == wireValue("""
        {"specs":"1.0.4.0",\(common),
         "methods":["info","credentials/list","credentials/authorize","credentials/sendOTP","signatures/signHash"]}
        """))
    #expect(try CSCCodec.v2.encode(model).value == wireValue("""
        {"specs":"2.0.0.2",\(common),
         "methods":["info","credentials/list","credentials/authorize","credentials/getChallenge","signatures/signHash"],
         "signAlgorithms":{"algos":["1.2.840.113549.1.1.1","1.2.840.10045.4.3.2"]},
         "signature_formats":{"formats":[]},"conformance_levels":[]}
        """))

    let upstream = try CSCCodec.v2.decodeServiceInfo(wire("""
        {"specs":"2.0.0.2",\(common),"methods":["credentials/getChallenge"],
         "signAlgorithms":{"algos":["1.2.840.10045.4.3.2"]}}
        """))
    #expect(upstream.specs == "2.0.0.2")
    #expect(upstream.signAlgorithms == [SignatureAlgorithm.ecdsaWithSHA256])
    #expect(upstream.oauth2 == "https://gw.example")
}

// MARK: - auth/login

@Test("auth/login: refresh_token and the v1 sample's refreshToken are both read")
func loginRefreshTokenSpellings() throws {
    for body in [#"{"refresh_token":"r-1","rememberMe":true}"#, #"{"refreshToken":"r-1","rememberMe":true}"#] {
        #expect(try CSCCodec.v1.decodeLoginRequest(wire(body)) == LoginRequest(refreshToken: "r-1", rememberMe: true))
    }
}
