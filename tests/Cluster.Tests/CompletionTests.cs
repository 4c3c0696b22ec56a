using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>The completion loop and the chat template's continuation, as plain classes: no cluster.</summary>
public sealed class CompletionTests
{
    private static readonly PromptUsage Usage = new(Tokens: 5, CachedTokens: 2, PrefilledTokens: 3);

    private static Completion Reply(int maxTokens, params string[] stops) =>
        new(ByteTokenizer.Instance, stops, new CompletionRecord("r", Start: 5, Target: 5 + maxTokens, Usage));

    private static List<CompletionChunk> Run(Completion reply, string text)
    {
        var chunks = new List<CompletionChunk>();
        var ids = ByteTokenizer.Instance.Encode(text).ToArray();
        for (int i = 0; i < ids.Length && !reply.Finished; i++) chunks.Add(reply.Next(reply.Start + i, ids[i]));
        return chunks;
    }

    [Fact]
    public void A_stop_sequence_ends_the_reply_and_is_not_in_its_text()
    {
        var chunks = Run(Reply(20, "\nUser:"), "Hello.\nUser: more");
        Assert.Equal("Hello.", string.Concat(chunks.Select(c => c.Text)));
        Assert.Equal(FinishReason.Stop, chunks[^1].Finish);
        Assert.Equal("Hello.\nUser:".Length, chunks.Count);             // it ended on the token that completed the stop
        Assert.All(chunks[..^1], c => Assert.Null(c.Finish));
        Assert.Equal("", chunks[^2].Text);                               // "\nUser" was held back: it could still become the stop
    }

    [Fact]
    public void Text_held_back_as_a_possible_stop_comes_out_at_the_end_of_the_budget()
    {
        var chunks = Run(Reply(9, "\nUser:"), "Hi there\nUs");
        Assert.Equal(9, chunks.Count);
        Assert.Equal(FinishReason.Length, chunks[^1].Finish);
        Assert.Equal("Hi there\n", string.Concat(chunks.Select(c => c.Text)));   // budget 9: the 9th token is "\n", flushed
    }

    [Fact]
    public void Only_the_first_chunk_carries_the_prompt_usage_and_positions_are_absolute()
    {
        var chunks = Run(Reply(4), "abcd");
        Assert.Equal(Usage, chunks[0].Prompt);
        Assert.All(chunks.Skip(1), c => Assert.Null(c.Prompt));
        Assert.Equal([5, 6, 7, 8], chunks.Select(c => c.Position));
        Assert.Equal(FinishReason.Length, chunks[^1].Finish);
    }

    [Fact]
    public void The_same_tokens_give_the_same_chunks_so_a_resumed_request_lines_up()
    {
        Assert.Equal(Run(Reply(12, "lo", "x"), "hello world!"), Run(Reply(12, "lo", "x"), "hello world!"));
    }

    [Fact]
    public void A_model_without_a_tokenizer_streams_ids_without_text()
    {
        var reply = new Completion(null, ["a"], new CompletionRecord(null, 0, 3, Usage));
        var chunks = Enumerable.Range(0, 3).Select(i => reply.Next(i, 97)).ToList();
        Assert.All(chunks, c => Assert.Null(c.Text));
        Assert.Equal(FinishReason.Length, chunks[^1].Finish);
        Assert.Throws<InvalidOperationException>(() => reply.Next(3, 97));
    }

    [Fact]
    public void Chat_turns_stop_at_the_next_user_turn_besides_the_requests_own_stops()
    {
        Assert.Equal([ChatTemplate.TurnStop, "END"], Completion.StopsOf(new CompletionRequest(null, PromptInput.FromTurns(new ChatTurn("user", "hi")), 4, Stop: ["END"])));
        Assert.Equal(["END"], Completion.StopsOf(new CompletionRequest(null, PromptInput.FromText("hi"), 4, Stop: ["END"])));
        Assert.Empty(Completion.StopsOf(new CompletionRequest(null, null, 4)));
    }

    [Theory]
    [InlineData("", "User: hi\nAssistant:")]                                           // a new conversation
    [InlineData("User: a\nAssistant: b\nUser:", " hi\nAssistant:")]                    // the reply stopped at the next user turn
    [InlineData("User: a\nAssistant: b, and", "\nUser: hi\nAssistant:")]               // the reply ran out of tokens mid-line
    [InlineData("User: a\nAssistant: b\n", "User: hi\nAssistant:")]                    // the reply ended its line
    [InlineData("User:", "\nUser: hi\nAssistant:")]                                    // not a stop: a document that says "User:"
    public void A_turn_after_what_the_session_holds_continues_the_template(string held, string expected)
    {
        Assert.Equal(expected, ChatTemplate.After(held, [new ChatTurn("user", "hi")]));
    }

    [Fact]
    public void An_unknown_role_is_refused_by_name()
    {
        var e = Assert.Throws<InvalidOptionsException>(() => ChatTemplate.Validate([new ChatTurn("user", "a"), new ChatTurn("robot", "b")]));
        Assert.Contains("'robot'", e.Message);
    }
}
