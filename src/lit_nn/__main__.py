from lit_nn.cli import main

main()
