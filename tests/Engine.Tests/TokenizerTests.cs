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
}
