using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace TauCluster.Http.Tests;

/// <summary>
/// Malformed input of every kind a client or an attacker sends, at every layer: the bytes, the content type, the
/// JSON, each field's type and range, the size, the transport. Each gets its 4xx with OpenAI's error object, and the
/// silo serves the next good request.
/// </summary>
[Collection(nameof(ServerCollection))]
public sealed class MalformedInputTests(ServerFixture fixture)
{
    private SiloServer Server => fixture.Server;

    private const string Completions = "/v1/completions";
    private const string Chat = "/v1/chat/completions";
    private const string Json = "application/json";

    /// <param name="Expect">The error's code, or its param (the field it names) where the code is generic.</param>
    public sealed record Case(string Path, string? ContentType, byte[] Body, int Status, string? Expect);

    private static Case Text(string path, string body, int status, string? expect, string? contentType = Json) =>
        new(path, contentType, Encoding.UTF8.GetBytes(body), status, expect);

    private static Case Bytes(string path, string before, byte[] bad, string after, int status, string? expect) =>
        new(path, Json, [.. Encoding.UTF8.GetBytes(before), .. bad, .. Encoding.UTF8.GetBytes(after)], status, expect);

    private static readonly Dictionary<string, Case> Cases = new()
    {
        // The bytes.
        ["invalid UTF-8 byte in a string"] = Bytes(Completions, """{"model": "tiny", "prompt": "a""", [0xFF, 0xFE], "\"}", 400, "invalid_encoding"),
        ["overlong UTF-8 encoding"] = Bytes(Completions, """{"model": "tiny", "prompt": "a""", [0xC0, 0xAF], "\"}", 400, "invalid_encoding"),
        ["UTF-8 sequence cut short"] = Bytes(Completions, """{"model": "tiny", "prompt": "a""", [0xE2, 0x82], "\"}", 400, "invalid_encoding"),
        ["UTF-8 encoded surrogate"] = Bytes(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "a""", [0xED, 0xA0, 0x80], "\"}]}", 400, "invalid_encoding"),
        ["invalid UTF-8 in a key"] = Bytes(Completions, "{\"model\": \"tiny\", \"prompt\": \"x\", \"", [0xFF], "\": 1}", 400, "invalid_encoding"),
        ["escaped unpaired surrogate in the prompt"] = Text(Completions, """{"model": "tiny", "prompt": "a\ud800b"}""", 400, "prompt"),
        ["escaped unpaired surrogate in a message"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "\udc00"}]}""", 400, "messages"),
        ["escaped unpaired surrogate in stop"] = Text(Completions, """{"model": "tiny", "prompt": "x", "stop": ["\ud800"]}""", 400, "stop"),
        ["UTF-16 body"] = new(Completions, Json, Encoding.Unicode.GetBytes("""{"model": "tiny", "prompt": "x"}"""), 400, "invalid_json"),
        // The content type.
        ["text/plain"] = Text(Completions, """{"model": "tiny", "prompt": "x"}""", 400, "invalid_content_type", "text/plain"),
        ["form-urlencoded"] = Text(Completions, "model=tiny&prompt=x", 400, "invalid_content_type", "application/x-www-form-urlencoded"),
        ["multipart"] = Text(Chat, "--b\r\n\r\n{}\r\n--b--", 400, "invalid_content_type", "multipart/form-data; boundary=b"),
        ["JSON in latin-1"] = Text(Completions, """{"model": "tiny", "prompt": "x"}""", 400, "invalid_content_type", "application/json; charset=iso-8859-1"),
        ["a content type that does not parse"] = Text(Completions, """{"model": "tiny", "prompt": "x"}""", 400, "invalid_content_type", "not a media type"),
        // The JSON.
        ["empty body"] = Text(Completions, "", 400, "invalid_json"),
        ["only whitespace"] = Text(Chat, " \r\n\t ", 400, "invalid_json"),
        ["null"] = Text(Completions, "null", 400, "invalid_json"),
        ["an array"] = Text(Completions, "[1, 2, 3]", 400, "invalid_json"),
        ["a string"] = Text(Chat, "\"hello\"", 400, "invalid_json"),
        ["a number"] = Text(Completions, "42", 400, "invalid_json"),
        ["object cut short"] = Text(Completions, """{"model": "tiny", "prompt": "x""", 400, "invalid_json"),
        ["string cut short"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "hi""", 400, "invalid_json"),
        ["trailing garbage"] = Text(Completions, """{"model": "tiny", "prompt": "x"} }""", 400, "invalid_json"),
        ["two objects"] = Text(Completions, """{"model": "tiny", "prompt": "x"}{"model": "tiny"}""", 400, "invalid_json"),
        ["a key given twice"] = Text(Completions, """{"model": "tiny", "model": "tiny", "prompt": "x"}""", 400, "invalid_json"),
        ["nesting 1000 deep"] = Text(Completions, $$"""{"model": "tiny", "prompt": "x", "extra": {{new string('[', 1000)}}{{new string(']', 1000)}}}""", 400, "invalid_json"),
        ["a comment"] = Text(Completions, """{/* hi */ "model": "tiny", "prompt": "x"}""", 400, "invalid_json"),
        ["single quotes"] = Text(Completions, "{'model': 'tiny', 'prompt': 'x'}", 400, "invalid_json"),
        ["a trailing comma"] = Text(Completions, """{"model": "tiny", "prompt": "x",}""", 400, "invalid_json"),
        ["NaN"] = Text(Completions, """{"model": "tiny", "prompt": "x", "temperature": NaN}""", 400, "invalid_json"),
        ["an unquoted key"] = Text(Chat, """{model: "tiny"}""", 400, "invalid_json"),
        // The fields.
        ["model missing"] = Text(Completions, """{"prompt": "x"}""", 400, "model"),
        ["model a number"] = Text(Completions, """{"model": 7, "prompt": "x"}""", 400, "model"),
        ["model unknown"] = Text(Completions, """{"model": "no-such-model", "prompt": "x"}""", 404, "model_not_found"),
        ["model a path"] = Text(Chat, """{"model": "../../etc/passwd", "messages": [{"role": "user", "content": "x"}]}""", 400, null),
        ["prompt missing"] = Text(Completions, """{"model": "tiny"}""", 400, "prompt"),
        ["prompt an object"] = Text(Completions, """{"model": "tiny", "prompt": {"text": "x"}}""", 400, "prompt"),
        ["prompt a number"] = Text(Completions, """{"model": "tiny", "prompt": 1.5}""", 400, "prompt"),
        ["prompt of two strings"] = Text(Completions, """{"model": "tiny", "prompt": ["a", "b"]}""", 400, "prompt"),
        ["prompt ids not integers"] = Text(Completions, """{"model": "tiny", "prompt": [1, 2.5]}""", 400, "prompt"),
        ["prompt id past the vocabulary"] = Text(Completions, """{"model": "tiny", "prompt": [1, 256]}""", 400, "invalid_token"),
        ["prompt id negative"] = Text(Completions, """{"model": "tiny", "prompt": [-1]}""", 400, "invalid_token"),
        ["prompt longer than the context"] = Text(Completions, $$"""{"model": "tiny", "prompt": "{{new string('a', 3000)}}"}""", 400, "context_length_exceeded"),
        ["max_tokens zero"] = Text(Completions, """{"model": "tiny", "prompt": "x", "max_tokens": 0}""", 400, "max_tokens"),
        ["max_tokens a string"] = Text(Completions, """{"model": "tiny", "prompt": "x", "max_tokens": "ten"}""", 400, "max_tokens"),
        ["max_tokens past int"] = Text(Completions, """{"model": "tiny", "prompt": "x", "max_tokens": 1e20}""", 400, "max_tokens"),
        ["max_tokens past the context"] = Text(Completions, """{"model": "tiny", "prompt": "x", "max_tokens": 5000}""", 400, "context_length_exceeded"),
        ["temperature negative"] = Text(Completions, """{"model": "tiny", "prompt": "x", "temperature": -1}""", 400, "temperature"),
        ["temperature a string"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}""", 400, "temperature"),
        ["top_p zero"] = Text(Completions, """{"model": "tiny", "prompt": "x", "top_p": 0}""", 400, "top_p"),
        ["top_k negative"] = Text(Completions, """{"model": "tiny", "prompt": "x", "top_k": -2}""", 400, "top_k"),
        ["presence_penalty past 2"] = Text(Completions, """{"model": "tiny", "prompt": "x", "presence_penalty": 2.5}""", 400, "presence_penalty"),
        ["frequency_penalty below -2"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "frequency_penalty": -3}""", 400, "frequency_penalty"),
        ["repetition_penalty zero"] = Text(Completions, """{"model": "tiny", "prompt": "x", "repetition_penalty": 0}""", 400, "repetition_penalty"),
        ["min_p past 1"] = Text(Completions, """{"model": "tiny", "prompt": "x", "min_p": 1.5}""", 400, "min_p"),
        ["presence_penalty a string"] = Text(Completions, """{"model": "tiny", "prompt": "x", "presence_penalty": "high"}""", 400, "presence_penalty"),
        ["seed a fraction"] = Text(Completions, """{"model": "tiny", "prompt": "x", "seed": 1.5}""", 400, "seed"),
        ["stream a string"] = Text(Completions, """{"model": "tiny", "prompt": "x", "stream": "yes"}""", 400, "stream"),
        ["stop a number"] = Text(Completions, """{"model": "tiny", "prompt": "x", "stop": 3}""", 400, "stop"),
        ["five stop sequences"] = Text(Completions, """{"model": "tiny", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}""", 400, "stop"),
        ["n of zero"] = Text(Completions, """{"model": "tiny", "prompt": "x", "n": 0}""", 400, "n"),
        ["n past the limit"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 17}""", 400, "n"),
        ["logprobs past 5"] = Text(Completions, """{"model": "tiny", "prompt": "x", "logprobs": 6}""", 400, "logprobs"),
        ["completion logprobs true"] = Text(Completions, """{"model": "tiny", "prompt": "x", "logprobs": true}""", 400, "logprobs"),
        ["top_logprobs past 20"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}""", 400, "top_logprobs"),
        ["top_logprobs without logprobs"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}""", 400, "top_logprobs"),
        ["chat logprobs a number"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "logprobs": 2}""", 400, "logprobs"),
        ["echo in chat"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "echo": true}""", 400, "echo"),
        ["logit_bias an array"] = Text(Completions, """{"model": "tiny", "prompt": "x", "logit_bias": [1]}""", 400, "logit_bias"),
        ["logit_bias a word for a token"] = Text(Completions, """{"model": "tiny", "prompt": "x", "logit_bias": {"a": 1}}""", 400, "logit_bias"),
        ["logit_bias past 100"] = Text(Completions, """{"model": "tiny", "prompt": "x", "logit_bias": {"5": 101}}""", 400, "logit_bias"),
        ["logit_bias outside the vocabulary"] = Text(Completions, """{"model": "tiny", "prompt": "x", "logit_bias": {"256": 1}}""", 400, "logit_bias"),
        ["tools"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "tools": []}""", 400, "tools"),
        ["session a path"] = Text(Completions, """{"model": "tiny", "prompt": "x", "session": "../etc"}""", 400, "session"),
        ["domain unknown"] = Text(Completions, """{"model": "tiny", "prompt": "x", "domain": "no-such-domain"}""", 404, "domain"),
        ["messages missing"] = Text(Chat, """{"model": "tiny"}""", 400, "messages"),
        ["messages empty"] = Text(Chat, """{"model": "tiny", "messages": []}""", 400, "messages"),
        ["messages an object"] = Text(Chat, """{"model": "tiny", "messages": {"role": "user"}}""", 400, "messages"),
        ["a message without a role"] = Text(Chat, """{"model": "tiny", "messages": [{"content": "x"}]}""", 400, "messages"),
        ["a message of an unknown role"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}""", 400, "messages"),
        ["a message content a number"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": 5}]}""", 400, "messages"),
        ["an image part"] = Text(Chat, """{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}""", 400, "messages"),
        // The size.
        ["a body over the size limit"] = Text(Completions, $$"""{"model": "tiny", "prompt": "{{new string('a', 2 << 20)}}"}""", 413, "request_too_large"),
    };

    public static TheoryData<string> CaseNames() => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task Malformed_input_gets_its_4xx_with_an_openai_error_and_the_silo_keeps_serving(string name)
    {
        var c = Cases[name];
        using var content = new ByteArrayContent(c.Body);
        if (c.ContentType is not null) content.Headers.TryAddWithoutValidation("Content-Type", c.ContentType);
        using var response = await Server.Http().PostAsync(c.Path, content);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(c.Status == (int)response.StatusCode, $"{name}: {(int)response.StatusCode} {text}");
        AssertOpenAiError(JsonNode.Parse(text)!, c.Expect);
        Assert.StartsWith("application/json", response.Content.Headers.ContentType?.ToString(), StringComparison.Ordinal);
        await StillServes();
    }

    [Fact]
    public void The_battery_has_at_least_thirty_cases_across_both_endpoints()
    {
        Assert.True(Cases.Count >= 30, $"{Cases.Count} cases");
        Assert.Contains(Cases.Values, c => c.Path == Chat);
        Assert.Contains(Cases.Values, c => c.Path == Completions);
    }

    /// <summary>
    /// A body that stops short of its Content-Length and never comes: once Kestrel's minimum body data rate has had its
    /// grace period (5 s), the request ends with 408 and OpenAI's error object.
    /// </summary>
    [Fact]
    public async Task A_body_that_stops_short_of_its_content_length_gets_408()
    {
        string body = """{"model": "tiny", "prompt": "the rest never comes""";
        var response = await Raw($"POST {Completions} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {body.Length + 40}\r\n\r\n{body}",
            endSending: false);
        Assert.StartsWith("HTTP/1.1 408", response, StringComparison.Ordinal);
        AssertOpenAiError(JsonNode.Parse(BodyOf(response))!, null);
        await StillServes();
    }

    /// <summary>The body of a raw HTTP/1.1 response, unchunked where it was sent in chunks.</summary>
    private static string BodyOf(string response)
    {
        int end = response.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        string headers = response[..end], rest = response[(end + 4)..];
        if (!headers.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase)) return rest;
        var body = new StringBuilder();
        for (int at = 0; ;)
        {
            int line = rest.IndexOf("\r\n", at, StringComparison.Ordinal);
            int size = Convert.ToInt32(rest[at..line], 16);
            if (size == 0) return body.ToString();
            body.Append(rest, line + 2, size);
            at = line + 2 + size + 2;
        }
    }

    /// <summary>A client that hangs up mid-body can be sent nothing; what matters is that nothing fails on the server's side.</summary>
    [Fact]
    public async Task A_client_that_hangs_up_mid_body_leaves_the_silo_serving()
    {
        string body = """{"model": "tiny", "prompt": "cut off""";
        string response;
        try
        {
            response = await Raw($"POST {Chat} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {body.Length + 40}\r\n\r\n{body}");
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            response = "";   // the silo dropped the connection it could not answer
        }
        Assert.False(response.StartsWith("HTTP/1.1 5", StringComparison.Ordinal), response);
        await StillServes();
    }

    [Fact]
    public async Task A_chunked_body_with_a_bad_chunk_size_gets_400()
    {
        var response = await Raw($"POST {Chat} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n",
            endSending: false);   // the request is whole; Kestrel closes the connection once it has answered
        Assert.StartsWith("HTTP/1.1 400", response, StringComparison.Ordinal);
        AssertOpenAiError(JsonNode.Parse(BodyOf(response))!, null);
        await StillServes();
    }

    /// <summary>Sends a request as raw bytes, ends the sending half of the connection (or not), and reads the whole answer.</summary>
    private async Task<string> Raw(string request, bool endSending = true)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await socket.ConnectAsync(Server.Address.Host, Server.Address.Port, timeout.Token);
        await socket.SendAsync(Encoding.UTF8.GetBytes(request), SocketFlags.None, timeout.Token);
        if (endSending) socket.Shutdown(SocketShutdown.Send);
        var answer = new MemoryStream();
        var buffer = new byte[4096];
        for (int read; (read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token)) > 0;) answer.Write(buffer, 0, read);
        return Encoding.UTF8.GetString(answer.ToArray());
    }

    private static void AssertOpenAiError(JsonNode body, string? expect)
    {
        var error = body["error"]!.AsObject();
        Assert.False(string.IsNullOrWhiteSpace(error["message"]!.GetValue<string>()));
        Assert.Equal("invalid_request_error", error["type"]!.GetValue<string>());
        Assert.True(error.ContainsKey("param") && error.ContainsKey("code"), error.ToJsonString());
        if (expect is not null)
            Assert.True(error["code"]?.GetValue<string>() == expect || error["param"]?.GetValue<string>() == expect, $"expected {expect}: {error.ToJsonString()}");
    }

    private async Task StillServes()
    {
        using var response = await Server.Http().PostAsync(Completions,
            new StringContent("""{"model": "tiny", "prompt": "still serving", "max_tokens": 2}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, JsonNode.Parse(await response.Content.ReadAsStringAsync())!["usage"]!["completion_tokens"]!.GetValue<int>());
    }
}
