namespace TauCluster.Engine.Tests;

public sealed class TokenizerTests
{
    [Fact]
    public void Gpt2_tokenizer_encodes_and_decodes_like_gpt2()
    {
        var tokenizer = TextTokenizer.For("gpt2")!;
        Assert.Equal([15496, 995], tokenizer.Encode("Hello world"));
        Assert.Equal("Hello world, Tauformer!", tokenizer.Decode(tokenizer.Encode("Hello world, Tauformer!")));
    }

    [Fact]
    public void Byte_tokenizer_round_trips_utf8()
    {
        var tokenizer = TextTokenizer.For("bytes")!;
        var ids = tokenizer.Encode("λ = E/(E+τ)");
        Assert.All(ids, id => Assert.InRange(id, 0, 255));
        Assert.Equal("λ = E/(E+τ)", tokenizer.Decode(ids));
    }

    [Fact]
    public void Model_without_a_tokenizer_works_on_ids_only()
    {
        Assert.Null(TextTokenizer.For(null));
        Assert.Null(TauModel.CreateRandom(TestSupport.SmallConfig(AttentionKind.Causal), 1).Tokenizer);
    }

    [Theory]
    [InlineData("gpt2", "Emoji 🙂 and λ-attention: τ = 1e-6 ✓")]
    [InlineData("bytes", "naïve λ 🙂")]
    public void Incremental_decoder_streams_whole_characters_only(string tokenizerName, string text)
    {
        var tokenizer = TextTokenizer.For(tokenizerName)!;
        var ids = tokenizer.Encode(text);
        var decoder = new IncrementalDecoder(tokenizer);
        var deltas = ids.Select(decoder.Add).ToList();
        Assert.Equal(text, string.Concat(deltas));
        Assert.DoesNotContain(deltas, d => d.Contains('\uFFFD'));
        Assert.Contains(deltas, d => d.Length == 0);   // some token ended mid-character and was held back
    }

    [Fact]
    public void Incremental_decoding_of_any_bytes_equals_decoding_them_all_at_once()
    {
        var tokenizer = TextTokenizer.For("bytes")!;
        var rng = new Random(7);
        for (int trial = 0; trial < 200; trial++)
        {
            // Bytes a small model might well produce: valid characters, lone continuation bytes, sequences cut short.
            var ids = Enumerable.Range(0, rng.Next(1, 40)).Select(_ => rng.Next(4) == 0 ? rng.Next(0x80, 0x100) : rng.Next(0x20, 0x80)).ToArray();
            var decoder = new IncrementalDecoder(tokenizer);
            string streamed = string.Concat(ids.Select(decoder.Add)) + decoder.Flush();
            Assert.Equal(tokenizer.Decode(ids), streamed);
        }
    }
}
