using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>A session's transcript and turnstile on their own: plain classes, no cluster.</summary>
public sealed class TranscriptTests
{
    private static TauModel Model(string? tokenizer, int vocab) => TauModel.CreateRandom(new ModelConfig(VocabSize: vocab, NLayer: 1, NHead: 1, NKvHead: 1,
        NEmbd: 8, SequenceLen: 64, Attention: AttentionKind.Causal, Tokenizer: tokenizer).Validate(), 1);

    private static readonly Lazy<TauModel> Bytes = new(() => Model("bytes", 256));
    private static readonly Lazy<TauModel> Gpt2 = new(() => Model("gpt2", 50257));

    private static Transcript Of(params int[] ids)
    {
        var transcript = new Transcript();
        transcript.AddRange(ids);
        return transcript;
    }

    [Fact]
    public void A_prompt_is_tokenised_by_the_models_tokenizer_or_taken_as_ids_and_checked()
    {
        Assert.Equal("hi!"u8.ToArray().Select(b => (int)b), Transcript.Tokenize(Bytes.Value, PromptInput.FromText("hi!")));
        Assert.Equal([7, 255, 0], Transcript.Tokenize(Bytes.Value, PromptInput.FromIds([7, 255, 0])));
        Assert.Contains("empty", Assert.Throws<InvalidOptionsException>(() => Transcript.Tokenize(Bytes.Value, PromptInput.FromText(""))).Message);
        Assert.Throws<TokenOutOfRangeException>(() => Transcript.Tokenize(Bytes.Value, PromptInput.FromIds([3, 256])));
        Assert.Contains("no tokenizer", Assert.Throws<InvalidOptionsException>(() => Transcript.Tokenize(Model(null, 10), PromptInput.FromText("x"))).Message);
    }

    [Fact]
    public void Ids_share_the_prefix_they_agree_on_and_the_rest_is_new()
    {
        var transcript = Of(1, 2, 3, 4);
        void Shares(int[] prompt, int keep, int[] rest)
        {
            var shared = transcript.SharedPrefix(null, PromptInput.FromIds(prompt), prompt);
            Assert.Equal(keep, shared.Keep);
            Assert.Equal(rest, shared.Remainder);
        }
        Shares([1, 2, 9, 9], 2, [9, 9]);
        Shares([1, 2, 3, 4, 5], 4, [5]);
        Shares([8], 0, [8]);
        Shares([1, 2], 2, []);
    }

    /// <summary>
    /// A reply comes back as the text the client was shown, which need not re-encode to the ids that were sampled: GPT-2
    /// encodes "hello world" as "hello" + " world", while the session sampled "hel" then "lo".
    /// </summary>
    [Fact]
    public void Text_shares_the_longest_prefix_whose_decoded_text_the_prompt_starts_with()
    {
        var tokenizer = Gpt2.Value.Tokenizer!;
        int[] hel = [.. tokenizer.Encode("hel")], lo = [.. tokenizer.Encode("lo")];
        var transcript = Of([.. hel, .. lo]);
        int[] whole = [.. tokenizer.Encode("hello world")];
        Assert.NotEqual(hel[0], whole[0]);   // the ids disagree from the first one: only the text can tell

        var (keep, rest) = transcript.SharedPrefix(tokenizer, PromptInput.FromText("hello world"), whole);
        Assert.Equal(hel.Length + lo.Length, keep);
        Assert.Equal(tokenizer.Encode(" world"), rest);

        var (keepSome, restOfHelp) = transcript.SharedPrefix(tokenizer, PromptInput.FromText("help me"), [.. tokenizer.Encode("help me")]);
        Assert.Equal(hel.Length, keepSome);                                   // "hel" agrees, "hello" does not
        Assert.Equal(tokenizer.Encode("p me"), restOfHelp);
    }

    [Fact]
    public void A_retried_append_is_recognised_only_where_it_took_effect()
    {
        var transcript = Of(1, 2, 3, 4, 5);
        Assert.True(transcript.AlreadyAppended(3, [4, 5]));
        Assert.False(transcript.AlreadyAppended(3, [4, 6]));
        Assert.False(transcript.AlreadyAppended(2, [4, 5]));
    }

    [Fact]
    public void Tokens_pack_to_little_endian_int32s_and_back_and_truncate_and_slice()
    {
        var transcript = Of(0, 1, 255, 50256, int.MaxValue);
        byte[] packed = transcript.Pack();
        Assert.Equal(20, packed.Length);
        Assert.Equal([0xFF, 0, 0, 0], packed[8..12]);
        Assert.Equal(transcript.ToArray(), Transcript.Unpack(packed).ToArray());
        Assert.Equal([255, 50256, int.MaxValue], transcript.From(2));
        transcript.Truncate(2);
        Assert.Equal([0, 1], transcript.ToArray());
        Assert.Empty(Transcript.Unpack([]));
    }

    [Fact]
    public async Task The_turnstile_serves_one_caller_at_a_time_in_arrival_order()
    {
        var turnstile = new Turnstile();
        var first = await turnstile.Enter();
        var second = turnstile.Enter().AsTask();
        var third = turnstile.Enter().AsTask();
        Assert.False(second.IsCompleted || third.IsCompleted);
        first.Dispose();
        using (await second.WaitAsync(TimeSpan.FromMinutes(1)))
            Assert.False(third.IsCompleted);
        (await third.WaitAsync(TimeSpan.FromMinutes(1))).Dispose();
        using var again = await turnstile.Enter();   // free once every turn has ended
    }

    [Fact]
    public void A_prompt_is_placed_after_the_transcript_or_as_the_whole_of_it()
    {
        var bytes = Bytes.Value;
        var held = Of([.. ByteTokenizer.Instance.Encode("User: a\nAssistant: b\nUser:")]);
        var (keep, rest) = held.Place(bytes, PromptInput.FromTurns(new ChatTurn("user", "c")), PromptPlacement.After);
        Assert.Equal((held.Count, " c\nAssistant:"), (keep, ByteTokenizer.Instance.Decode(rest)));   // the reply stopped at the next turn

        (keep, rest) = held.Place(bytes, PromptInput.FromTurns(new ChatTurn("user", "a"), new ChatTurn("assistant", " b"), new ChatTurn("user", "d")), PromptPlacement.Whole);
        Assert.Equal("User: a\nAssistant: b\nUser:".Length, keep);                                   // the whole conversation, rendered, agrees that far
        Assert.Equal(" d\nAssistant:", ByteTokenizer.Instance.Decode(rest));

        Assert.Equal((held.Count, 0), (held.Place(bytes, null, PromptPlacement.Whole).Keep, held.Place(bytes, null, PromptPlacement.Whole).Remainder.Length));
        Assert.Equal([3], Of(1, 2).Place(bytes, PromptInput.FromIds([3]), PromptPlacement.After).Remainder);
        Assert.Contains("no tokenizer", Assert.Throws<InvalidOptionsException>(
            () => Of(1).Place(Model(null, 10), PromptInput.FromTurns(new ChatTurn("user", "x")), PromptPlacement.After)).Message);
    }
}
